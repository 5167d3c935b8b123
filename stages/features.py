"""Stage `features`: run every split's images once through VGG16's conv base and cache the output.

Writes data/features/{split}_features.npy (float32, N x h x w x 512) and
{split}_labels.npy. Images are decoded and resized in parallel with the conv base's
work (tf.data), and features are appended to the .npy batch by batch, so memory does
not grow with N. Labels come from the same sorted file list, so they are aligned with
the features by construction. `features.precision` picks the arithmetic of the conv
base: float32, bfloat16 (CPUs with AVX512_BF16 or AMX) or mixed_float16 (GPUs).
"""

import math
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from stages.common import atomic_file, load_params, run, StageError
from stages.images import image_dataset, list_images
from stages.nets import conv_base, feature_extractor, precision_policy, WEIGHTS_FILE

OUTPUT_DIR = Path("data/features")
SPLITS = ("train", "validation", "test")


def extract(model, paths, size, batch_size, features_path):
    """Stream the features of `paths` into a float32 .npy file; return its shape.

    The header is written first and each batch appended to the file, so neither this
    process nor a memory map holds more than one batch of features.
    """
    shape = (len(paths), *model.output_shape[1:])
    batches = image_dataset(paths, size, batch_size)
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")), "fortran_order": False, "shape": shape}
    written = 0
    with atomic_file(features_path) as tmp, open(tmp, "wb") as out:
        np.lib.format.write_array_header_1_0(out, header)
        try:
            for images in tqdm(batches, total=math.ceil(len(paths) / batch_size), desc=str(features_path),
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
            raise StageError(f"{features_path}: got features of {written} images, expected {len(paths)}")
    return shape


def build_extractor(params):
    """The `features` stage's model, from params.yaml, in features.precision."""
    base = params["base"]
    with precision_policy(params["features"]["precision"]):
        return feature_extractor(conv_base(WEIGHTS_FILE, params["image"]["size"]), base["preprocess"])


def main():
    params = load_params()
    size, batch_size = params["image"]["size"], params["features"]["batch_size"]
    if not isinstance(batch_size, int) or batch_size < 1:
        raise StageError(f"params.yaml: features.batch_size is {batch_size!r}; it must be a whole number >= 1")
    model = build_extractor(params)
    for split in SPLITS:
        paths, labels = list_images(split)
        shape = extract(model, paths, size, batch_size, OUTPUT_DIR / f"{split}_features.npy")
        with atomic_file(OUTPUT_DIR / f"{split}_labels.npy") as tmp:
            np.save(tmp, np.asarray(labels, dtype=np.float32))
        print(f"{split}: features {shape}, {sum(labels)} dogs / {len(labels) - sum(labels)} cats")


if __name__ == "__main__":
    run(main)
