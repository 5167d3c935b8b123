"""Image lists and tf.data pipelines over a split folder (`data/split`): how every model
of the project sees a picture."""

import math
import os
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from dogs_vs_cats.catalog import CLASS_FOLDERS, IMAGE_NAME, SPLIT_DIR
from dogs_vs_cats.errors import StageError


def _index(path):
    match = IMAGE_NAME.fullmatch(path.name)
    if not match:
        raise StageError(f"{path} is not a file `split` writes (cat.<n>.jpg, dog.<n>.jpg): remove it, "
                         f"or run `dvc checkout {path.parents[2]}` (or `dvc repro --force split`) to restore the split")
    return int(match.group(2))


def list_images(split, root=SPLIT_DIR):
    """Sorted image paths of one split and their labels (all cats, then all dogs)."""
    paths, labels = [], []
    for label, folder in enumerate(CLASS_FOLDERS):
        directory = Path(root) / split / folder
        if not directory.is_dir():
            raise StageError(f"{directory} not found: run `dvc repro split` first")
        files = sorted((p for p in directory.iterdir() if not p.name.startswith(".")), key=_index)
        paths += [str(p) for p in files]
        labels += [label] * len(files)
    if not paths:
        raise StageError(f"{Path(root) / split} holds no images: check the split counts in params.yaml")
    return paths, labels


def resize(image, size):
    """An RGB image (uint8 or float, 0..255) to a float32 size x size x 3 tensor of whole
    numbers 0..255: how every model of the project sees a picture.

    Rounded to whole numbers so that an image kept in memory as uint8 (`load_images`)
    is exactly the image decoded again from disk.
    """
    image = tf.image.resize(image, (size, size), method="bilinear", antialias=True)
    return tf.round(tf.clip_by_value(image, 0.0, 255.0))


def decode(jpeg, size):
    """JPEG bytes (what `split` writes) to `resize`'s tensor."""
    return resize(tf.io.decode_jpeg(jpeg, channels=3), size)


def load_image(path, size):
    """Decode one file of data/split to `resize`'s tensor."""
    return decode(tf.io.read_file(path), size)


def _fixed_parallelism(data):
    # Fixed parallelism and two batches in flight, not AUTOTUNE: on a 2-core CPU the
    # autotuner made every other run of the features stage 25% slower (bench/features.py).
    options = tf.data.Options()
    options.autotune.enabled = False
    return data.prefetch(2).with_options(options)


def image_dataset(paths, size, batch_size):
    """Batches of images in the order of `paths`, decoded on every core while the model
    computes: feature caching relies on the order to keep features and labels aligned."""
    data = tf.data.Dataset.from_tensor_slices(paths)
    cores = os.cpu_count() or 1
    data = data.map(lambda p: load_image(p, size), num_parallel_calls=cores, deterministic=True)
    return _fixed_parallelism(data.batch(batch_size))


def load_images(paths, size, desc="decoding"):
    """Every image of `paths`, decoded and resized once, as one uint8 N x size x size x 3 array."""
    images = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    batch = 64
    done = 0
    for chunk in tqdm(image_dataset(paths, size, batch), total=math.ceil(len(paths) / batch), desc=desc,
                      unit="batch", mininterval=2, leave=False):
        images[done:done + len(chunk)] = chunk.numpy().astype(np.uint8)
        done += len(chunk)
    return images
