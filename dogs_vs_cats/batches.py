"""The batches a model trains and is validated on: in an order this project draws (not
Keras' or tf.data's), from arrays in memory or decoded from disk on request, and each
worker's share of them under `distribute: multi_worker`."""

import numpy as np
from keras.utils import PyDataset

from dogs_vs_cats.catalog import SPLIT_DIR
from dogs_vs_cats.images import list_images, load_image, load_images


def split_labels(split, root=SPLIT_DIR):
    paths, labels = list_images(split, root)
    return paths, np.asarray(labels, dtype=np.float32)


class EpochBatches(PyDataset):
    """Training batches in an order this project draws: epoch `e` takes the examples in the
    order of numpy's default_rng((seed, e)).permutation (`shuffle=False`: in their own
    order, for validation). The training loop sets `epoch` before each epoch's batches.

    A subclass gives `batch(indices)`. Batch `index` holds the examples
    `order(epoch)[index * batch_size:(index + 1) * batch_size]` (the global batch); replica
    r of n takes its rows r, r + n, r + 2n, ... through `rows`, so that each worker reads
    and decodes only its own. Still a Keras PyDataset, which fit() takes with `shuffle=False`.
    """

    def __init__(self, count, batch_size, labels, seed=0, shuffle=True):
        super().__init__()
        self.count, self.batch_size, self.seed, self.shuffle = count, batch_size, seed, shuffle
        self.labels = np.asarray(labels, dtype=np.float32)
        self.epoch = 0

    def order(self, epoch):
        if not self.shuffle:
            return np.arange(self.count)
        return np.random.default_rng((self.seed, epoch)).permutation(self.count)

    def __len__(self):
        return -(-self.count // self.batch_size)

    def indices(self, index):
        """The examples of batch `index` of the current epoch, in the batch's order."""
        return self.order(self.epoch)[index * self.batch_size:(index + 1) * self.batch_size]

    def __getitem__(self, index):
        indices = self.indices(index)
        return self.batch(indices), self.labels[indices]

    def rows(self, index, replica, replicas):
        """Replica `replica`'s share of batch `index` when `replicas` share it: its rows
        replica, replica + replicas, ...; only those are read, decoded and augmented."""
        indices = self.indices(index)[replica::replicas]
        return self.batch(indices), self.labels[indices]

    def batch(self, indices):
        raise NotImplementedError


class ArrayBatches(EpochBatches):
    """Batches of in-memory arrays (uint8 images are handed over as float32)."""

    def __init__(self, x, labels, batch_size, seed=0, shuffle=True):
        super().__init__(len(x), batch_size, labels, seed, shuffle)
        self.x = x

    def batch(self, indices):
        return self.x[indices].astype(np.float32)


class FileBatches(EpochBatches):
    """Batches of images decoded from disk on every request, exactly as `load_images` decodes them."""

    def __init__(self, paths, labels, size, batch_size, seed=0, shuffle=True):
        super().__init__(len(paths), batch_size, labels, seed, shuffle)
        self.paths, self.size = list(paths), size

    def batch(self, indices):
        return np.stack([load_image(self.paths[i], self.size).numpy() for i in indices])


def image_data(size, batch_size, seed, cached, root=SPLIT_DIR):
    """The training data: training batches (an `EpochBatches`, reshuffled every epoch by
    `seed`) and validation batches from the split folder `root`.

    Cached, every image is decoded and resized once and kept in memory as uint8; the
    batches are the same as when decoding from disk on every request.
    """
    (train_paths, train_labels), (val_paths, val_labels) = split_labels("train", root), split_labels("validation", root)
    if cached:
        train = ArrayBatches(load_images(train_paths, size, "decoding train"), train_labels, batch_size, seed)
        validation = ArrayBatches(load_images(val_paths, size, "decoding validation"), val_labels, batch_size,
                                  shuffle=False)
    else:
        train = FileBatches(train_paths, train_labels, size, batch_size, seed)
        validation = FileBatches(val_paths, val_labels, size, batch_size, shuffle=False)
    return {"x": train, "validation_data": validation}


class ValidationBatches:
    """The validation set of `data` (an `EpochBatches` in its own order, or arrays `(x, y)`
    cut into `validation_batch_size` batches) as whole batches: `len`, `count` photos, and
    batch b as (images, labels, the positions of its photos)."""

    def __init__(self, data):
        self.source = data.get("validation_data")
        if self.source is None:
            self.count, self.size = 0, 1
        elif isinstance(self.source, EpochBatches):
            self.count, self.size = self.source.count, self.source.batch_size
        else:
            self.count, self.size = len(self.source[1]), data.get("validation_batch_size") or 32

    def __len__(self):
        return -(-self.count // self.size)

    def __getitem__(self, index):
        positions = slice(index * self.size, min((index + 1) * self.size, self.count))
        if isinstance(self.source, EpochBatches):
            images, labels = self.source[index]
        else:
            x, y = self.source
            images, labels = np.asarray(x[positions], np.float32), y[positions]
        return images, np.asarray(labels, np.float32), positions
