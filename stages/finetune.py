"""Stage `finetune` (Listings 5.20-5.23): conv base + trained head, end to end on augmented images.

Phase 1 (optional, `frozen_epochs`) trains with the whole base frozen; phase 2 unfreezes
the base from `unfreeze_from` on and trains with a small learning rate. The model of the
epoch with the lowest validation loss is saved.
"""

from pathlib import Path

import keras
import numpy as np

from stages.common import atomic_file, load_params, run, StageError
from stages.images import image_dataset, list_images
from stages.nets import augmentation, check_image_size, conv_base, unfreeze_from, VGGPreprocess
from stages.training import fit_verbosity, KeepBest, LiveCallback, open_live, seed_everything

HEAD = Path("models/head.keras")
OUTPUT = Path("models/finetuned.keras")


def count_trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def build_models(base, head, preprocess, augment_params, seed):
    """The model to keep (raw pixels -> preprocessing -> conv base -> head) and the one to
    train, which puts augmentation in front of it. Augmentation stays out of the saved
    model: it only exists for training."""
    inputs = keras.Input(base.input_shape[1:])
    # training=False keeps the base in inference mode even when its layers are unfrozen.
    outputs = head(base(VGGPreprocess(preprocess)(inputs), training=False))
    model = keras.Model(inputs, outputs, name="finetuned")
    trainer = keras.Sequential([keras.Input(base.input_shape[1:]), augmentation(augment_params, seed), model],
                               name="finetune_trainer")
    return model, trainer


def load_head(feature_shape):
    if not HEAD.is_file():
        raise StageError(f"{HEAD} not found: run `dvc repro train_head` first")
    head = keras.models.load_model(HEAD)
    if tuple(head.input_shape[1:]) != tuple(feature_shape):
        raise StageError(f"{HEAD} takes features of shape {head.input_shape[1:]}, but the conv base gives "
                         f"{feature_shape} at this image.size: run `dvc repro` to rebuild the features and head")
    return head


def main():
    params = load_params()
    tune, size = params["finetune"], check_image_size(params["image"]["size"])
    seed_everything(tune["seed"])
    train_paths, train_labels = list_images("train")
    val_paths, val_labels = list_images("validation")
    train_data = image_dataset(train_paths, size, tune["batch_size"], train_labels, shuffle_seed=tune["seed"])
    val_data = image_dataset(val_paths, size, tune["batch_size"], val_labels)

    base = conv_base(params["base"]["weights"], size)
    head = load_head(base.output_shape[1:])
    model, trainer = build_models(base, head, params["base"]["preprocess"], tune["augment"], tune["seed"])
    best = KeepBest(model)
    with open_live("finetune", tune) as live:
        callbacks = [LiveCallback(live=live), best]
        phases = [(tune["frozen_epochs"], tune["frozen_lr"], None), (tune["epochs"], tune["lr"], tune["unfreeze_from"])]
        done = 0
        for epochs, lr, first_trainable in phases:
            if epochs <= 0:
                continue
            if first_trainable is None:
                base.trainable = False
            else:
                unfreeze_from(base, first_trainable)
            # Changing `trainable` only takes effect after compiling again.
            trainer.compile(optimizer=keras.optimizers.RMSprop(learning_rate=lr),
                          loss="binary_crossentropy", metrics=["accuracy"])
            trainer.fit(train_data, validation_data=val_data, initial_epoch=done, epochs=done + epochs,
                      callbacks=callbacks, verbose=fit_verbosity())
            done += epochs
        best.restore()
        live.summary["best_epoch"] = best.best_epoch
    with atomic_file(OUTPUT) as tmp:
        model.save(tmp)
    print(f"wrote {OUTPUT} (best val_loss {best.best:.4f} at epoch {best.best_epoch}; "
          f"{count_trainable(model):,} trainable parameters)")


if __name__ == "__main__":
    run(main)
