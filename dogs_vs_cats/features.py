"""VGG16's conv-base output over every image of a split, cached as .npy files (Listing
5.17's extract_features): what `train_head` trains on.

Images are decoded and resized in parallel with the conv base's work (tf.data), and
features are appended to the .npy batch by batch, so memory does not grow with N.
Labels come from the same sorted file list, so they are aligned with the features by
construction. Features are float32 whatever precision the base computes in.
"""

import math
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from dogs_vs_cats.catalog import SPLITS
from dogs_vs_cats.errors import StageError
from dogs_vs_cats.images import image_dataset, list_images
from dogs_vs_cats.nets import conv_base, feature_extractor
from dogs_vs_cats.outputs import atomic_file, staged_files
from dogs_vs_cats.precision import precision_policy


def extract(model, paths, size, batch_size, features_path, name=None):
    """Stream the features of `paths` into a float32 .npy file; return its shape. `name` is
    what messages call the file (its final path, when `features_path` is a temporary one).

    The header is written first and each batch appended to the file, so neither this
    process nor a memory map holds more than one batch of features.
    """
    name = name or features_path
    shape = (len(paths), *model.output_shape[1:])
    batches = image_dataset(paths, size, batch_size)
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")), "fortran_order": False, "shape": shape}
    written = 0
    with atomic_file(features_path) as tmp, open(tmp, "wb") as out:
        np.lib.format.write_array_header_1_0(out, header)
        try:
            for images in tqdm(batches, total=math.ceil(len(paths) / batch_size), desc=str(name),
                               unit="batch", mininterval=2):
                output = np.ascontiguousarray(model.predict_on_batch(images), dtype="<f4")
                out.write(output.data)
                written += len(output)
        except tf.errors.ResourceExhaustedError:
            raise  # out of memory: `run` says so; the images are fine
        except tf.errors.OpError as e:
            # The split stage checks every image; an unreadable one means data/split was changed by hand.
            last = paths[min(written + batch_size, len(paths)) - 1]
            reason = e.message.splitlines()[0][:120]
            raise StageError(f"could not read an image among {paths[written]} .. {last} ({reason}): "
                             f"run `dvc repro --force split` to rewrite data/split") from None
        if written != len(paths):
            raise StageError(f"{name}: got features of {written} images, expected {len(paths)}")
    return shape


def build_extractor(weights_file, size, preprocess, precision):
    """The `features` stage's model: preprocessing and VGG16's conv base from `weights_file`,
    computing in `precision` (features.precision)."""
    with precision_policy(precision):
        return feature_extractor(conv_base(weights_file, size), preprocess)


def write_features(model, split_dir, size, batch_size, output):
    """`output`/{split}_features.npy and {split}_labels.npy for every split of `split_dir`;
    yield (split, features' shape, labels) as each split is done. All or nothing: the files
    are written beside `output` and replace the previous ones once every split is done, so
    a failure on one split leaves the previous features of every split as they were."""
    with staged_files(output) as staged:
        for split in SPLITS:
            paths, labels = list_images(split, split_dir)
            name = Path(output) / f"{split}_features.npy"
            shape = extract(model, paths, size, batch_size, staged / name.name, name=name)
            np.save(staged / f"{split}_labels.npy", np.asarray(labels, dtype=np.float32))
            yield split, shape, labels


def load_features(folder, split):
    """(features, labels) of one split from a folder `write_features` wrote; the features are
    memory-mapped, so a batch is read when it is used (19,000 photos' are 600 MB)."""
    paths = [Path(folder) / f"{split}_{kind}.npy" for kind in ("features", "labels")]
    for path in paths:
        if not path.is_file():
            raise StageError(f"{path} not found: run `dvc repro features` first")
    return np.load(paths[0], mmap_mode="r"), np.load(paths[1])
