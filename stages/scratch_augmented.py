"""Stage `scratch_augmented` (Listings 5.13-5.14): the small convnet with dropout, on augmented images.

    python -m stages.scratch_augmented SPLIT MODEL LOGS
    (dvc.yaml: data/split models/scratch_augmented.keras dvclive/scratch_augmented)
"""

from dogs_vs_cats.cache import use_cache
from dogs_vs_cats.config import load_params
from dogs_vs_cats.nets import small_convnet
from dogs_vs_cats.stage import run
from dogs_vs_cats.training import distributed, image_data, Phase, seed_everything, train, training_precision


def main(split_dir, model_file, logs):
    params = load_params()
    own, size = params.scratch_augmented, params.image.size
    seed_everything(own.seed)
    data = image_data(size, own.batch_size, own.seed, use_cache(own.cache), split_dir)
    with distributed("scratch_augmented", own):
        with training_precision("scratch_augmented", own):
            model = small_convnet(size, own.dropout)
        train("scratch_augmented", model, data, [Phase(own.epochs, own.lr)], own, augment=params.augment,
              output=model_file, logs=logs)


if __name__ == "__main__":
    run(main, inputs=("SPLIT",), outputs=("MODEL", "LOGS"))
