"""Stage `train_head` (Listing 5.18): a dense classifier on the cached conv-base features.

    python -m stages.train_head FEATURES MODEL LOGS     (dvc.yaml: data/features models/head.keras dvclive/train_head)
"""

from dogs_vs_cats.batches import ArrayBatches
from dogs_vs_cats.config import load_params
from dogs_vs_cats.distribute import training_scope
from dogs_vs_cats.features import load_features
from dogs_vs_cats.nets import dense_head
from dogs_vs_cats.stage import run
from dogs_vs_cats.training import Phase, train, training_precision


def main(features, model_file, logs):
    own = load_params().train_head
    train_x, train_y = load_features(features, "train")
    data = {"x": ArrayBatches(train_x, train_y, own.batch_size, own.seed),
            "validation_data": load_features(features, "validation"), "validation_batch_size": own.batch_size}
    with training_scope("train_head", own):
        with training_precision("train_head", own):
            model = dense_head(train_x.shape[1:], own.units, own.dropout)
        train("train_head", model, data, [Phase(own.epochs, own.lr)], own, output=model_file, logs=logs)


if __name__ == "__main__":
    run(main, inputs=("FEATURES",), outputs=("MODEL", "LOGS"))
