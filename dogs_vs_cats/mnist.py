"""MNIST in Keras' mnist.npz format (x_train, y_train, x_test, y_test): a local file or
Keras' own download, checked before it is used."""

import zipfile
import zlib
from pathlib import Path

import numpy as np

from dogs_vs_cats.errors import not_a_file, StageError

KEYS = ("x_train", "y_train", "x_test", "y_test")
# Keras' own copy (keras.datasets.mnist.load_data), with its digest.
KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
KERAS_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"


def download():
    """Keras' mnist.npz: from ~/.keras/datasets, or downloaded there once."""
    import keras
    try:
        return Path(keras.utils.get_file("mnist.npz", origin=KERAS_ORIGIN, file_hash=KERAS_SHA256))
    except Exception as e:  # Keras raises a bare Exception for a failed download
        raise StageError(f"could not download MNIST ({str(e).splitlines()[0][:200]}): put Keras' mnist.npz in "
                         f"~/.keras/datasets/, or set mnist.npz in params.yaml to a local copy "
                         f"(`make mnist MNIST=path/to/mnist.npz`)") from None


def load_mnist(path):
    """x_train, y_train, x_test, y_test from `path`; StageError unless it holds Keras' mnist.npz arrays."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = tuple(data[key] for key in KEYS)
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:  # truncated: the last two
        raise StageError(f"mnist.npz {path} is not Keras' mnist.npz (arrays {', '.join(KEYS)}; {e}): "
                         f"copy it again, or set mnist.npz to \"\" to download it") from None
    for images, labels, name in ((arrays[0], arrays[1], "train"), (arrays[2], arrays[3], "test")):
        if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels) or not len(images):
            raise StageError(f"mnist.npz {path}: x_{name} must be N x 28 x 28 with N labels in y_{name}, "
                             f"got {images.shape} and {labels.shape}")
        # Keras' pixels are uint8 0..255 and the model rescales by 1/255: floats in 0..1
        # would train on images 255 times too dark, without an error.
        if images.dtype.kind not in "ui" or (images.size and (images.min() < 0 or images.max() > 255)):
            low, high = (images.min(), images.max()) if images.size else (0, 0)
            raise StageError(f"mnist.npz {path}: x_{name} holds {images.dtype} values ({low:.3g} to {high:.3g}), "
                             f"not Keras' 8-bit pixels 0..255: save them as uint8 (x * 255 for 0..1), or copy "
                             f"Keras' mnist.npz again")
        bad = labels[~np.isin(labels, np.arange(10))]
        if len(bad):  # TensorFlow's loss would fail deep inside training, or learn from garbage
            raise StageError(f"mnist.npz {path}: y_{name} holds {len(bad)} labels that are not digits 0-9 "
                             f"(such as {bad[0]}): copy Keras' mnist.npz again")
    return arrays


def source(npz):
    """The file the `mnist.npz` param names: a local mnist.npz, or Keras' download for ""."""
    if not npz:
        return download()
    path = Path(npz)
    if not path.is_file():
        raise StageError(f"mnist.npz {path} {not_a_file(path)}: set mnist.npz to a local mnist.npz, "
                         f'or to "" to download it')
    return path
