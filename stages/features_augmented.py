"""Stage `features_augmented` (Listings 5.20-5.21): the frozen conv base inside an end-to-end
model, with a new dense head, trained on augmented images.

    python -m stages.features_augmented SPLIT WEIGHTS MODEL LOGS
    (dvc.yaml: data/split models/vgg16_notop.weights.h5 models/features_augmented.keras dvclive/features_augmented)

How the frozen base runs (the frozen-part cache, echo, views, precision, distribute) is
`fit_images`' business (docs/book-schedule.md).
"""

from dogs_vs_cats.config import load_params
from dogs_vs_cats.distribute import training_scope
from dogs_vs_cats.fitting import fit_images
from dogs_vs_cats.nets import conv_base, frozen_base_classifier
from dogs_vs_cats.stage import run
from dogs_vs_cats.training import Phase, training_precision


def main(split_dir, weights, model_file, logs):
    params = load_params()
    own = params.features_augmented
    with training_scope("features_augmented", own):
        with training_precision("features_augmented", own):
            base = conv_base(weights, params.image.size)
            model = frozen_base_classifier(base, params.base.preprocess, own.units)
        fit_images("features_augmented", model, [Phase(own.epochs, own.lr)], params, split_dir, output=model_file,
                   logs=logs, base=base, augment=params.augment)


if __name__ == "__main__":
    run(main, inputs=("SPLIT", "WEIGHTS"), outputs=("MODEL", "LOGS"))
