"""The frozen-part cache: where a part of the model is frozen, its output for an image
cannot change during training, so it is computed once (validation) or once per epoch
(augmented training images) and only the layers above it are trained on it."""

import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dogs_vs_cats.augment import augmentation
from dogs_vs_cats.batches import ArrayBatches, split_labels
from dogs_vs_cats.catalog import SPLIT_DIR
from dogs_vs_cats.images import image_dataset, load_images
from dogs_vs_cats.outputs import disk_errors_are_one_line
from dogs_vs_cats.precision import has_gpu, resolve_precision

# A pool of views up to this size stays in memory with the decoded images; a larger one
# lives on disk and the images are decoded again for each pass, so that memory does not
# grow with the photos (the full data's pool at 224 px is 3.8 GB a view in bfloat16).
# Where it lives changes no number: both give the same bytes.
POOL_IN_MEMORY_BYTES = 1 << 30


def use_cache(cache, echo=1, views=0, distribute="none"):
    """A stage's `cache` param as on or off: auto is on without a GPU, and wherever data
    echoing (`echo` > 1) or a pool of views (`views` > 0), which reuse cached features, asks
    for it; off under multi_worker, which the schema allows only with cache auto or false."""
    if cache != "auto":
        return cache
    return distribute != "multi_worker" and (not has_gpu() or echo > 1 or views > 0)


class Pool:
    """`views` passes of the frozen part's output for `count` images, kept by image: rows
    `write`n by pass and `read` back by (pass, image).

    In memory (`folder` None), or on disk: one file of rows per pass in `folder`, written
    row by row as the pass streams and read row by row with pread. Not memory-mapped: a
    mapping's touched pages count in the process's resident memory until it is unmapped,
    and an epoch touches a whole view; read through the file, the same bytes stay in the
    kernel's page cache, shared and reclaimable. `dtype` may be bfloat16 (ml_dtypes):
    rows are stored as their bytes.
    """

    def __init__(self, views, count, shape, dtype, folder=None):
        self.views, self.count, self.shape, self.dtype = views, count, tuple(shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape)) * self.dtype.itemsize
        self.folder = None if folder is None else Path(folder)
        if self.folder is None:
            self.rows = np.empty((views, count, *self.shape), dtype=self.dtype)
        else:
            self.files = [os.open(self.folder / f"view-{view}.bin", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
                          for view in range(views)]

    def write(self, view, indices, rows):
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if self.folder is None:
            self.rows[view, indices] = rows
            return
        raw = rows.reshape(len(rows), -1).view(np.uint8)
        with disk_errors_are_one_line(self.folder / f"view-{view}.bin"):
            for index, row in zip(indices, raw):
                os.pwrite(self.files[view], row, int(index) * self.row_bytes)

    def read(self, views, indices):
        """Image `indices[k]`'s row of pass `views[k]`, for every k."""
        if self.folder is None:
            return self.rows[views, indices]
        raw = np.empty((len(indices), self.row_bytes), dtype=np.uint8)
        for row, view, index in zip(raw, views, indices):
            if os.preadv(self.files[view], [row], int(index) * self.row_bytes) != self.row_bytes:
                raise OSError(f"{self.folder / f'view-{view}.bin'} is shorter than its pass")
        return raw.view(self.dtype).reshape(len(indices), *self.shape)

    def close(self):
        for file in getattr(self, "files", []):
            os.close(file)
        self.files = []

    def __del__(self):
        self.close()


def pool_dtype(precision):
    """The rows a pool keeps for a stage of `precision`: bfloat16 where the layers above
    compute in it (they cast their input to it, so nothing is lost), else as computed."""
    import ml_dtypes
    return ml_dtypes.bfloat16 if resolve_precision(precision) == "bfloat16" else None


def pool_on_disk(views, count, shape, dtype):
    return views * count * int(np.prod(shape)) * np.dtype(dtype).itemsize > POOL_IN_MEMORY_BYTES


class DecodedImages:
    """Images of `paths` decoded on request, as `load_images` decodes them: `images[indices]`
    is a uint8 batch. For a pool on disk, where keeping every decoded image would grow with
    the photos; `passes` decodes a whole pass in its order on every core."""

    def __init__(self, paths, size):
        self.paths, self.size = list(paths), size

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, indices):
        return next(iter(self.passes(indices, len(indices))))

    def passes(self, order, batch_size):
        for batch in image_dataset([self.paths[i] for i in order], self.size, batch_size):
            yield batch.numpy().astype(np.uint8)


class FrozenFeatureBatches(ArrayBatches):
    """The training batches of what sits above a frozen `extractor`: its output for the
    epoch's augmented images, in the epoch's order.

    At the first request of a batch for a fresh epoch, every batch of that epoch is run
    through `augmenter` (once per batch, in batch order, as end-to-end training calls it)
    and the extractor: the trainer gets the batches the whole model would. With `echo` > 1
    (data echoing), the features are reused for `echo` epochs, in each one's own order.

    With `views` > 0 (a pool of views), epochs 0 to views-1 run fresh passes as above and
    each pass is kept in a `Pool` (on disk in `pool_dir` when given, rows stored as
    `pool_dtype`, e.g. bfloat16 where the layers above compute in it); every later epoch
    takes each image's features from one of those passes, drawn by
    default_rng((seed, epoch, 1)): `views` passes in all, and no later epoch repeats an
    earlier one's inputs as a whole, as an echoed epoch does. `images` is an array or
    `DecodedImages`.
    """

    def __init__(self, images, labels, batch_size, seed, embed, echo=1, views=0, pool_dir=None, pool_dtype=None):
        super().__init__(images, labels, batch_size, seed)
        self.embed, self.echo, self.views = embed, echo, views
        self.pool_dir, self.pool_dtype = pool_dir, pool_dtype
        self.features, self.features_epoch = None, None
        self.pool, self.pooled = None, 0  # the kept passes, and how many it holds

    def batch(self, indices):
        if self.views:
            return self.from_pool(indices)
        fresh = self.epoch - self.epoch % self.echo
        if self.features_epoch != fresh:
            self.features, self.features_epoch = None, None  # two passes never held at once
            self.compute(fresh, self.keep_in_memory)
            self.features_epoch = fresh
        return self.features[indices]

    def keep_in_memory(self, indices, output):
        if self.features is None:
            self.features = np.empty((self.count, *output.shape[1:]), dtype=output.dtype)
        self.features[indices] = output

    def image_batches(self, order):
        """(indices, float32 images) of every batch of a pass over the images in `order`."""
        starts = range(0, self.count, self.batch_size)
        if isinstance(self.x, DecodedImages):
            images = self.x.passes(order, self.batch_size)
        else:
            images = (self.x[order[start:start + self.batch_size]] for start in starts)
        for start, batch in zip(starts, images):
            yield order[start:start + self.batch_size], batch.astype(np.float32)

    def compute(self, epoch, keep):
        """One pass of the frozen part over the epoch's augmented images, in its order:
        `keep(indices, features)` batch by batch (kept by image, so that an echoed epoch or
        a pool can reorder them)."""
        order = self.order(epoch)
        for indices, images in tqdm(self.image_batches(order), total=len(self), unit="batch", mininterval=2,
                                    desc=f"epoch {epoch + 1} features", leave=False):
            keep(indices, self.embed(images).numpy())

    def keep_in_pool(self, indices, output):
        if self.pool is None:
            dtype = self.pool_dtype or output.dtype
            on_disk = self.pool_dir is not None and pool_on_disk(self.views, self.count, output.shape[1:], dtype)
            self.pool = Pool(self.views, self.count, output.shape[1:], dtype, self.pool_dir if on_disk else None)
        self.pool.write(self.pooled, indices, output)

    def from_pool(self, indices):
        while self.pooled <= min(self.epoch, self.views - 1):
            self.compute(self.pooled, self.keep_in_pool)
            self.pooled += 1
        if self.epoch < self.views:
            views = np.full(len(indices), self.epoch)
        else:
            views = np.random.default_rng((self.seed, self.epoch, 1)).integers(0, self.views, self.count)[indices]
        return self.pool.read(views, indices).astype(np.float32)


def frozen_part_data(extractor, size, batch_size, seed, augment, echo=1, views=0, root=SPLIT_DIR, pool_dir=None,
                     pool_dtype=None):
    """fit()'s data for training what sits above a frozen `extractor`: `FrozenFeatureBatches`
    of the training images, and the validation images' features, computed once.

    With a pool of views too large for memory (`pool_on_disk`), the pool lives in
    `pool_dir` (a folder the caller removes) and the training images are decoded for each
    pass instead of kept."""
    import tensorflow as tf
    (train_paths, train_labels), (val_paths, val_labels) = split_labels("train", root), split_labels("validation", root)
    augmenter = augmentation(augment, seed)
    augmented = tf.function(lambda x: extractor(augmenter(x, training=True), training=False))
    plain = tf.function(lambda x: extractor(x, training=False))
    validation = np.concatenate([plain(images.astype(np.float32)).numpy() for images in
                                 DecodedImages(val_paths, size).passes(range(len(val_paths)), batch_size)])
    shape = validation.shape[1:]
    streamed = views and pool_dir is not None and pool_on_disk(views, len(train_paths), shape,
                                                               pool_dtype or validation.dtype)
    images = DecodedImages(train_paths, size) if streamed else load_images(train_paths, size, "decoding train")
    train = FrozenFeatureBatches(images, train_labels, batch_size, seed, augmented, echo, views, pool_dir if streamed
                                 else None, pool_dtype)
    return {"x": train, "validation_data": (validation, val_labels), "validation_batch_size": batch_size}
