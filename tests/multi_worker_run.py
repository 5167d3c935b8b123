"""One run of tests/test_multi_worker.py: `python -m tests.multi_worker_run OUT` with the
run's settings (JSON) in RUN_SETTINGS, one worker when TF_CONFIG is set, one process when
not. It trains a tiny dense model on random 6x6 pictures through `train`, inside the
stages' entry point (one-line errors, signals), and writes to OUT what the tests compare:
which training rows it read, the validation figures and the random draws before the first
step (the same weights on every worker), and the final weights."""

import json
import os
import time

import keras
import numpy as np

from dogs_vs_cats.augment import augmentation
from dogs_vs_cats.batches import ArrayBatches
from dogs_vs_cats.distribute import reseed, training_scope
from dogs_vs_cats.nets import dense_head
from dogs_vs_cats.stage import run
from dogs_vs_cats.training import Phase, train, validation_logs

AUGMENT = {"rotation": 40, "width_shift": 0.2, "height_shift": 0.2, "shear": 0.2, "zoom": 0.2,
           "horizontal_flip": True}


class Recording(ArrayBatches):
    """Training batches that note the rows each request reads, and take `pause` seconds."""

    def __init__(self, *args, pause=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.read, self.pause = [], pause

    def batch(self, indices):
        self.read.append([int(index) for index in indices])
        time.sleep(self.pause)
        return super().batch(indices)


def main(out):
    settings = json.loads(os.environ["RUN_SETTINGS"])
    out.mkdir(parents=True, exist_ok=True)
    params = {"seed": 5, "lr": 1e-2, "lr_schedule": "constant", "early_stopping": 0, "precision": "float32",
              "batch_size": 5, "worker_timeout": 30,
              "distribute": "multi_worker" if os.environ.get("TF_CONFIG") else "none", **settings.get("params", {})}
    rng = np.random.default_rng(0)
    photos = settings.get("photos", 24)
    x = rng.integers(0, 256, (photos, 6, 6, 3)).astype("uint8")
    y = (x[:, :3].mean(axis=(1, 2, 3)) > x[:, 3:].mean(axis=(1, 2, 3))).astype("float32")
    x_val = rng.integers(0, 256, (11, 6, 6, 3)).astype("uint8")
    y_val = (np.arange(11) % 2).astype("float32")
    report = {}
    with training_scope("train_head", params):
        batches = Recording(x, y, params["batch_size"], params["seed"], pause=settings.get("pause", 0.0))
        data = {"x": batches, "validation_data": (x_val, y_val), "validation_batch_size": 3}
        model = dense_head((6, 6, 3), 8, settings.get("dropout", 0.0))
        report["validation"] = validation_logs(lambda images: model(images, training=False), data)
        draws = keras.Sequential([keras.Input((6, 6, 3)), augmentation(AUGMENT, params["seed"]), keras.layers.Flatten(),
                                  keras.layers.Dropout(0.5)])
        reseed(draws)
        report["draws"] = keras.ops.convert_to_numpy(draws(x[:4].astype("float32"), training=True)).ravel().tolist()
        train("train_head", model, data, [Phase(settings.get("epochs", 2), params["lr"])], params,
              augment=AUGMENT if settings.get("augment") else None, output=out / "model.keras", logs=out / "logs")
    report["read"] = batches.read
    np.savez(out / "weights.npz", *model.get_weights())
    (out / "report.json").write_text(json.dumps(report))


if __name__ == "__main__":
    run(main, outputs=("OUT",))
