"""Stage `scratch` (Listing 5.5): the small convnet trained from scratch on the split.

    python -m stages.scratch SPLIT MODEL LOGS     (dvc.yaml: data/split models/scratch.keras dvclive/scratch)
"""

from dogs_vs_cats.cache import use_cache
from dogs_vs_cats.config import load_params
from dogs_vs_cats.nets import small_convnet
from dogs_vs_cats.stage import run
from dogs_vs_cats.training import distributed, image_data, Phase, seed_everything, train, training_precision


def main(split_dir, model_file, logs):
    params = load_params()
    own, size = params.scratch, params.image.size
    seed_everything(own.seed)
    data = image_data(size, own.batch_size, own.seed, use_cache(own.cache), split_dir)
    with distributed("scratch", own):
        with training_precision("scratch", own):
            model = small_convnet(size)
        train("scratch", model, data, [Phase(own.epochs, own.lr)], own, output=model_file, logs=logs)


if __name__ == "__main__":
    run(main, inputs=("SPLIT",), outputs=("MODEL", "LOGS"))
