"""What the training stages share: seeding, data, DVCLive logging, keeping the best epoch, saving."""

import contextlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import keras
from dvclive import Live
from dvclive.keras import DVCLiveCallback

from stages.common import atomic_file, choice
from stages.images import image_dataset, list_images
from stages.nets import augmentation, count_trainable


def seed_everything(seed):
    keras.utils.set_random_seed(seed)


@contextlib.contextmanager
def distributed(stage, params):
    """Build and train inside the tf.distribute strategy of the stage's `distribute` param.

    none: TensorFlow's default, one device. mirrored: MirroredStrategy, one replica per
    local GPU (the CPU when there is none), weights kept in sync after every batch;
    `batch_size` is then the global batch, split evenly across the replicas.
    """
    import tensorflow as tf
    if choice(params["distribute"], ("none", "mirrored"), f"{stage}.distribute") == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
        print(f"{stage}: MirroredStrategy over {strategy.num_replicas_in_sync} replica(s)")
    else:
        strategy = tf.distribute.get_strategy()
    with strategy.scope():
        yield strategy


def image_data(size, batch_size, seed):
    """Training batches (reshuffled every epoch, seeded) and validation batches from data/split."""
    train_paths, train_labels = list_images("train")
    val_paths, val_labels = list_images("validation")
    return {"x": image_dataset(train_paths, size, batch_size, train_labels, shuffle_seed=seed),
            "validation_data": image_dataset(val_paths, size, batch_size, val_labels),
            "shuffle": False}  # tf.data shuffles


def open_live(stage, params):
    """One DVCLive folder per training stage, declared in dvc.yaml (so no dvc.yaml of its own)."""
    live = Live(f"dvclive/{stage}", dvcyaml=None, save_dvc_exp=False)
    live.log_params(params)
    return live


class LiveCallback(DVCLiveCallback):
    """DVCLive's Keras callback, minus ending the Live when a fit() ends.

    A stage may call fit() more than once (fine-tuning's two phases); `train` ends the
    Live itself, once, so the steps keep counting across phases.
    """

    def on_train_end(self, logs=None):
        pass


class KeepBest(keras.callbacks.Callback):
    """Remember the weights of `model` at the epoch with the lowest `monitor`, across fit() calls.

    `model` is the one to keep, which may be part of the model being trained.
    """

    def __init__(self, model, monitor="val_loss"):
        super().__init__()
        self.kept, self.monitor = model, monitor
        self.best, self.best_weights, self.best_epoch = float("inf"), None, None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and value < self.best:
            self.best, self.best_weights, self.best_epoch = value, self.kept.get_weights(), epoch + 1

    def restore(self):
        if self.best_weights is not None:
            self.kept.set_weights(self.best_weights)


@dataclass
class Phase:
    epochs: int
    lr: float
    prepare: Optional[Callable[[], None]] = None  # e.g. freeze or unfreeze layers first


def fit_verbosity():
    # Keras' per-batch progress bar on a terminal; one line per epoch in logs.
    return 1 if sys.stdout.isatty() else 2


def train(stage, model, data, phases, params, augment=None, loss="binary_crossentropy", output=None):
    """Fit `model` through `phases` with RMSprop, log every epoch with DVCLive, and save the
    weights of the epoch with the lowest validation loss to `output` (models/<stage>.keras).

    `data` holds fit()'s data arguments. With `augment`, training runs the images through
    augmentation layers first; they are not part of the saved model, which sees raw images.
    """
    trainer = model
    if augment is not None:
        trainer = keras.Sequential([keras.Input(model.input_shape[1:]), augmentation(augment, params.get("seed")),
                                    model], name=f"{stage}_trainer")
    best = KeepBest(model)
    started = time.perf_counter()
    with open_live(stage, params) as live:
        done = 0
        for phase in phases:
            if phase.epochs <= 0:
                continue
            if phase.prepare:
                phase.prepare()
            # Changes to `trainable` only take effect after compiling again.
            trainer.compile(optimizer=keras.optimizers.RMSprop(learning_rate=phase.lr), loss=loss, metrics=["accuracy"])
            trainer.fit(**data, initial_epoch=done, epochs=done + phase.epochs,
                        callbacks=[LiveCallback(live=live), best], verbose=fit_verbosity())
            done += phase.epochs
        best.restore()
        live.summary["best_epoch"] = best.best_epoch or done
        live.summary["train_time_s"] = round(time.perf_counter() - started, 1)
    output = Path(output or f"models/{stage}.keras")
    with atomic_file(output) as tmp:
        model.save(tmp)
    kept = f"best val_loss {best.best:.4f} at epoch {best.best_epoch}" if best.best_epoch else f"epoch {done}"
    print(f"wrote {output} ({kept}; {model.count_params():,} parameters, {count_trainable(model):,} trainable)")
    return model
