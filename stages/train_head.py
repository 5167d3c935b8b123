"""Stage `train_head` (Listing 5.18): a dense classifier on the cached conv-base features."""

from pathlib import Path

import numpy as np

from stages.common import load_params, run, StageError
from stages.nets import dense_head
from stages.training import distributed, Phase, seed_everything, train, training_precision

FEATURES_DIR = Path("data/features")


def load_features(split):
    paths = [FEATURES_DIR / f"{split}_{kind}.npy" for kind in ("features", "labels")]
    for path in paths:
        if not path.is_file():
            raise StageError(f"{path} not found: run `dvc repro features` first")
    return np.load(paths[0]), np.load(paths[1])


def main():
    params = load_params()["train_head"]
    seed_everything(params["seed"])
    train_x, train_y = load_features("train")
    data = {"x": train_x, "y": train_y, "batch_size": params["batch_size"],
            "validation_data": load_features("validation")}
    with distributed("train_head", params):
        with training_precision("train_head", params):
            model = dense_head(train_x.shape[1:], params["units"], params["dropout"])
        train("train_head", model, data, [Phase(params["epochs"], params["lr"])], params, output="models/head.keras")


if __name__ == "__main__":
    run(main)
