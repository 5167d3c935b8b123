"""What the training stages share: seeding, DVCLive logging, keeping the best epoch."""

import sys

import keras
from dvclive import Live
from dvclive.keras import DVCLiveCallback


def seed_everything(seed):
    keras.utils.set_random_seed(seed)


def open_live(stage, params):
    """One DVCLive folder per training stage, declared in dvc.yaml (so no dvc.yaml of its own)."""
    live = Live(f"dvclive/{stage}", dvcyaml=None, save_dvc_exp=False)
    live.log_params(params)
    return live


class LiveCallback(DVCLiveCallback):
    """DVCLive's Keras callback, minus ending the Live when a fit() ends.

    A stage may call fit() more than once (fine-tuning's two phases); it ends the Live
    itself, once, so the steps keep counting across phases.
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


def fit_verbosity():
    # Keras' per-batch progress bar on a terminal; one line per epoch in logs.
    return 1 if sys.stdout.isatty() else 2
