"""The frozen-part cache: where a part of the model is frozen, its output for an image
cannot change during training, so it is computed once (validation) or once per epoch
(augmented training images) and only the layers above it are trained on it."""

import numpy as np
from tqdm import tqdm

from dogs_vs_cats.augment import augmentation
from dogs_vs_cats.catalog import SPLIT_DIR
from dogs_vs_cats.images import load_images
from dogs_vs_cats.precision import has_gpu
from dogs_vs_cats.training import ArrayBatches, split_labels


def use_cache(cache, echo=1, views=0, distribute="none"):
    """A stage's `cache` param as on or off: auto is on without a GPU, and wherever data
    echoing (`echo` > 1) or a pool of views (`views` > 0), which reuse cached features, asks
    for it; off under multi_worker, which the schema allows only with cache auto or false."""
    if cache != "auto":
        return cache
    return distribute != "multi_worker" and (not has_gpu() or echo > 1 or views > 0)


class FrozenFeatureBatches(ArrayBatches):
    """The training batches of what sits above a frozen `extractor`: its output for the
    epoch's augmented images, in the epoch's order.

    At the first request of a batch for a fresh epoch, every batch of that epoch is run
    through `augmenter` (once per batch, in batch order, as end-to-end training calls it)
    and the extractor: the trainer gets the batches the whole model would. With `echo` > 1
    (data echoing), the features are reused for `echo` epochs, in each one's own order.

    With `views` > 0 (a pool of views), epochs 0 to views-1 run fresh passes as above and
    each pass is kept; every later epoch takes each image's features from one of those
    passes, drawn by default_rng((seed, epoch, 1)): `views` passes in all, and no later
    epoch repeats an earlier one's inputs as a whole, as an echoed epoch does.
    """

    def __init__(self, images, labels, batch_size, seed, embed, echo=1, views=0):
        super().__init__(images, labels, batch_size, seed)
        self.embed, self.echo, self.views = embed, echo, views
        self.features, self.features_epoch = None, None
        self.pool, self.pooled = None, 0  # views x images x features, and how many passes it holds

    def batch(self, indices):
        if self.views:
            return self.from_pool(indices)
        fresh = self.epoch - self.epoch % self.echo
        if self.features_epoch != fresh:
            self.features, self.features_epoch = self.compute(fresh), fresh
        return self.features[indices]

    def compute(self, epoch):
        order = self.order(epoch)
        features = None
        for start in tqdm(range(0, self.count, self.batch_size), desc=f"epoch {epoch + 1} features", unit="batch",
                          mininterval=2, leave=False):
            indices = order[start:start + self.batch_size]
            output = self.embed(self.x[indices].astype(np.float32)).numpy()
            if features is None:
                features = np.empty((self.count, *output.shape[1:]), dtype=output.dtype)
            features[indices] = output  # kept by image, so that an echoed epoch can reorder them
        return features

    def from_pool(self, indices):
        while self.pooled <= min(self.epoch, self.views - 1):
            features = self.compute(self.pooled)
            if self.pool is None:
                self.pool = np.empty((self.views, *features.shape), dtype=features.dtype)
            self.pool[self.pooled] = features
            self.pooled += 1
        if self.epoch < self.views:
            return self.pool[self.epoch][indices]
        view = np.random.default_rng((self.seed, self.epoch, 1)).integers(0, self.views, self.count)
        return self.pool[view[indices], indices]


def frozen_part_data(extractor, size, batch_size, seed, augment, echo=1, views=0, root=SPLIT_DIR):
    """fit()'s data for training what sits above a frozen `extractor`: `FrozenFeatureBatches`
    of the training images, and the validation images' features, computed once."""
    import tensorflow as tf
    (train_paths, train_labels), (val_paths, val_labels) = split_labels("train", root), split_labels("validation", root)
    augmenter = augmentation(augment, seed)
    augmented = tf.function(lambda x: extractor(augmenter(x, training=True), training=False))
    plain = tf.function(lambda x: extractor(x, training=False))
    val_images = load_images(val_paths, size, "decoding validation")
    validation = np.concatenate([plain(val_images[start:start + batch_size].astype(np.float32)).numpy()
                                 for start in range(0, len(val_images), batch_size)])
    train = FrozenFeatureBatches(load_images(train_paths, size, "decoding train"), train_labels, batch_size, seed,
                                 augmented, echo, views)
    return {"x": train, "validation_data": (validation, val_labels), "validation_batch_size": batch_size}
