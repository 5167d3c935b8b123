"""Stage `scratch_augmented` (Listings 5.13-5.14): the small convnet with dropout, on augmented images.

    python -m stages.scratch_augmented SPLIT MODEL LOGS
    (dvc.yaml: data/split models/scratch_augmented.keras dvclive/scratch_augmented)
"""

from dogs_vs_cats.config import load_params
from dogs_vs_cats.distribute import training_scope
from dogs_vs_cats.fitting import fit_images
from dogs_vs_cats.nets import small_convnet
from dogs_vs_cats.stage import run
from dogs_vs_cats.training import Phase, training_precision


def main(split_dir, model_file, logs):
    params = load_params()
    own = params.scratch_augmented
    with training_scope("scratch_augmented", own):
        with training_precision("scratch_augmented", own):
            model = small_convnet(params.image.size, own.dropout)
        fit_images("scratch_augmented", model, [Phase(own.epochs, own.lr)], params, split_dir,
                   output=model_file, logs=logs, augment=params.augment)


if __name__ == "__main__":
    run(main, inputs=("SPLIT",), outputs=("MODEL", "LOGS"))
