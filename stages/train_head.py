"""Stage `train_head` (Listing 5.18): a dense classifier on the cached conv-base features."""

from pathlib import Path

import keras
import numpy as np

from stages.common import atomic_file, load_params, run, StageError
from stages.nets import dense_head
from stages.training import fit_verbosity, KeepBest, LiveCallback, open_live, seed_everything

FEATURES_DIR = Path("data/features")
OUTPUT = Path("models/head.keras")


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
    val_x, val_y = load_features("validation")

    model = dense_head(train_x.shape[1:], params["units"], params["dropout"])
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=params["lr"]),
                  loss="binary_crossentropy", metrics=["accuracy"])
    best = KeepBest(model)
    with open_live("train_head", params) as live:
        model.fit(train_x, train_y, epochs=params["epochs"], batch_size=params["batch_size"],
                  validation_data=(val_x, val_y), callbacks=[LiveCallback(live=live), best],
                  verbose=fit_verbosity())
        best.restore()
        live.summary["best_epoch"] = best.best_epoch
    with atomic_file(OUTPUT) as tmp:
        model.save(tmp)
    print(f"wrote {OUTPUT} (best val_loss {best.best:.4f} at epoch {best.best_epoch})")


if __name__ == "__main__":
    run(main)
