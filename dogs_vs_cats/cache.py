"""The frozen-part cache: where a part of the model is frozen, its output for an image
cannot change during training, so it is computed once (validation) or once per epoch
(augmented training images) and only the layers above it are trained on it."""

import numpy as np
from tqdm import tqdm

from dogs_vs_cats.augment import augmentation
from dogs_vs_cats.catalog import SPLIT_DIR
from dogs_vs_cats.images import array_dataset, load_images
from dogs_vs_cats.precision import has_gpu
from dogs_vs_cats.training import split_labels


def use_cache(cache, echo=1):
    """A stage's `cache` param as on or off: auto is on without a GPU, and wherever data
    echoing (`echo` > 1, which reuses cached features) asks for it."""
    return cache if cache != "auto" else (not has_gpu() or echo > 1)


def _embed_all(embed, batches, total, desc):
    features, labels = [], []
    for images, batch_labels in tqdm(batches, total=total, desc=desc, unit="batch", mininterval=2, leave=False):
        features.append(embed(images).numpy())
        labels.append(batch_labels.numpy())
    return np.concatenate(features), np.concatenate(labels)


def frozen_part_data(extractor, size, batch_size, seed, augment, echo=1, root=SPLIT_DIR):
    """fit()'s data, epoch by epoch, for training what sits above a frozen `extractor`.

    The frozen part's output cannot change during training, so it is computed once for
    the validation images, and once per epoch for the augmented training images, in the
    order and with the augmentations that end-to-end training would see: the trainer gets
    the same batches as the whole model would. With `echo` > 1 (data echoing), each pass
    of augmented features is reused, reshuffled, for `echo` epochs.
    """
    import tensorflow as tf
    (train_paths, train_labels), (val_paths, val_labels) = split_labels("train", root), split_labels("validation", root)
    train_batches = array_dataset(load_images(train_paths, size, "decoding train"), batch_size, train_labels, seed)
    val_batches = array_dataset(load_images(val_paths, size, "decoding validation"), batch_size, val_labels)
    total = -(-len(train_paths) // batch_size)
    augmenter = augmentation(augment, seed)
    plain = tf.function(lambda x: extractor(x, training=False))
    augmented = tf.function(lambda x: extractor(augmenter(x, training=True), training=False))
    validation = _embed_all(plain, val_batches, -(-len(val_paths) // batch_size), "validation features")
    current = {}

    def data(epoch):
        fresh = epoch % echo == 0 or not current
        if fresh:
            if current:
                # fit() starts two passes over a tf.data dataset per epoch after the first
                # (Keras 3.15), and each pass reshuffles: drawing one unused pass keeps the
                # order of the batches the same as in end-to-end training.
                iter(train_batches)
            current["x"], current["y"] = _embed_all(augmented, train_batches, total, f"epoch {epoch + 1} features")
        return {"x": current["x"], "y": current["y"], "batch_size": batch_size, "shuffle": not fresh,
                "validation_data": validation}

    return data
