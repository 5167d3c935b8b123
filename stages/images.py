"""Image lists and tf.data pipelines over `data/split`, shared by the image stages."""

import os
from pathlib import Path

import tensorflow as tf

from stages.common import StageError

SPLIT_DIR = Path("data/split")
CLASS_FOLDERS = ("cats", "dogs")  # label 0 and 1, as flow_from_directory orders them


def _index(path):
    return int(path.name.split(".")[1])


def list_images(split, root=SPLIT_DIR):
    """Sorted image paths of one split and their labels (all cats, then all dogs)."""
    paths, labels = [], []
    for label, folder in enumerate(CLASS_FOLDERS):
        directory = Path(root) / split / folder
        if not directory.is_dir():
            raise StageError(f"{directory} not found: run `dvc repro split` first")
        files = sorted(directory.glob("*.jpg"), key=_index)
        paths += [str(p) for p in files]
        labels += [label] * len(files)
    if not paths:
        raise StageError(f"{Path(root) / split} holds no images: check the split counts in params.yaml")
    return paths, labels


def load_image(path, size):
    """Decode one file to a float32 size x size x 3 tensor with values in 0..255."""
    image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
    image = tf.image.resize(image, (size, size), method="bilinear", antialias=True)
    return tf.clip_by_value(image, 0.0, 255.0)


def image_dataset(paths, size, batch_size, labels=None, shuffle_seed=None):
    """Batches of images (and labels), decoded on every core while the model computes.

    The order is the order of `paths` unless `shuffle_seed` is given: feature caching
    relies on that to keep features and labels aligned.
    """
    data = tf.data.Dataset.from_tensor_slices(paths if labels is None else (paths, labels))
    if shuffle_seed is not None:
        data = data.shuffle(len(paths), seed=shuffle_seed, reshuffle_each_iteration=True)
    cores = os.cpu_count() or 1
    if labels is None:
        data = data.map(lambda p: load_image(p, size), num_parallel_calls=cores, deterministic=True)
    else:
        data = data.map(lambda p, y: (load_image(p, size), y), num_parallel_calls=cores, deterministic=True)
    # Fixed parallelism and two batches in flight, not AUTOTUNE: on a 2-core CPU the
    # autotuner made every other run of the features stage 25% slower (bench/features.py).
    options = tf.data.Options()
    options.autotune.enabled = False
    return data.batch(batch_size).prefetch(2).with_options(options)
