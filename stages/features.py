"""Stage `features`: run every split's images once through VGG16's conv base and cache the output.

    python -m stages.features SPLIT WEIGHTS OUTPUT
    (dvc.yaml: data/split models/vgg16_notop.weights.h5 data/features)

Writes OUTPUT/{split}_features.npy (float32, N x h x w x 512) and {split}_labels.npy for
every split of SPLIT. Images are decoded and resized in parallel with the conv base's
work (tf.data), and features are appended to the .npy batch by batch, so memory does
not grow with N. `features.precision` picks the arithmetic of the conv base: float32,
bfloat16 (CPUs with AVX512_BF16 or AMX) or mixed_float16 (GPUs).
"""

from dogs_vs_cats.config import load_params
from dogs_vs_cats.features import build_extractor, write_features
from dogs_vs_cats.stage import run


def main(split_dir, weights, output):
    params = load_params()
    model = build_extractor(weights, params.image.size, params.base.preprocess, params.features.precision)
    for split, shape, labels in write_features(model, split_dir, params.image.size, params.features.batch_size, output):
        print(f"{split}: features {shape}, {sum(labels)} dogs / {len(labels) - sum(labels)} cats")


if __name__ == "__main__":
    run(main, inputs=("SPLIT", "WEIGHTS"), outputs=("OUTPUT",))
