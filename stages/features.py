"""Stage `features`: run every split's images once through VGG16's conv base and cache the output.

Writes data/features/{split}_features.npy (float32, N x h x w x 512) and
{split}_labels.npy. Features stream into a memory-mapped .npy, batch by batch, so
memory does not grow with N; labels come from the same sorted file list, so they are
aligned with the features by construction.
"""

import math
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stages.common import atomic_file, load_params, run, StageError
from stages.images import image_dataset, list_images
from stages.nets import conv_base, feature_extractor

OUTPUT_DIR = Path("data/features")
SPLITS = ("train", "validation", "test")


def extract(model, paths, size, batch_size, features_path):
    """Stream the features of `paths` into a .npy file; return its shape."""
    shape = (len(paths), *model.output_shape[1:])
    batches = image_dataset(paths, size, batch_size)
    with atomic_file(features_path) as tmp:
        features = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        position = 0
        for images in tqdm(batches, total=math.ceil(len(paths) / batch_size), desc=features_path.name, unit="batch"):
            output = model.predict_on_batch(images)
            features[position: position + len(output)] = output
            position += len(output)
        features.flush()
        del features
    return shape


def main():
    params = load_params()
    size, base_params, batch_size = params["image"]["size"], params["base"], params["features"]["batch_size"]
    if not isinstance(batch_size, int) or batch_size < 1:
        raise StageError(f"params.yaml: features.batch_size is {batch_size!r}; it must be a whole number >= 1")
    model = feature_extractor(conv_base(base_params["weights"], size), base_params["preprocess"])
    for split in SPLITS:
        paths, labels = list_images(split)
        shape = extract(model, paths, size, batch_size, OUTPUT_DIR / f"{split}_features.npy")
        with atomic_file(OUTPUT_DIR / f"{split}_labels.npy") as tmp:
            np.save(tmp, np.asarray(labels, dtype=np.float32))
        print(f"{split}: features {shape}, {sum(labels)} dogs / {len(labels) - sum(labels)} cats")


if __name__ == "__main__":
    run(main)
