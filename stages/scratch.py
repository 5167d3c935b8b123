"""Stage `scratch` (Listing 5.5): the small convnet trained from scratch on the split.

    python -m stages.scratch SPLIT MODEL LOGS     (dvc.yaml: data/split models/scratch.keras dvclive/scratch)
"""

from dogs_vs_cats.config import load_params
from dogs_vs_cats.distribute import training_scope
from dogs_vs_cats.fitting import fit_images
from dogs_vs_cats.nets import small_convnet
from dogs_vs_cats.stage import run
from dogs_vs_cats.training import Phase, training_precision


def main(split_dir, model_file, logs):
    params = load_params()
    own = params.scratch
    with training_scope("scratch", own):
        with training_precision("scratch", own):
            model = small_convnet(params.image.size)
        fit_images("scratch", model, [Phase(own.epochs, own.lr)], params, split_dir, output=model_file, logs=logs,
                   augment=None)


if __name__ == "__main__":
    run(main, inputs=("SPLIT",), outputs=("MODEL", "LOGS"))
