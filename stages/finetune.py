"""Stage `finetune` (Listings 5.22-5.23): conv base + trained head, end to end on augmented images.

Phase 1 (optional, `frozen_epochs`) trains with the whole base frozen; phase 2 unfreezes
the base from `unfreeze_from` on and trains with a small learning rate. The model of the
epoch with the lowest validation loss is saved.
"""

from pathlib import Path

import keras

from stages.common import load_params, run, StageError
from stages.nets import check_image_size, conv_base, unfreeze_from, VGGPreprocess
from stages.training import distributed, image_data, Phase, seed_everything, train

HEAD = Path("models/head.keras")


def load_head(feature_shape):
    if not HEAD.is_file():
        raise StageError(f"{HEAD} not found: run `dvc repro train_head` first")
    head = keras.models.load_model(HEAD)
    if tuple(head.input_shape[1:]) != tuple(feature_shape):
        raise StageError(f"{HEAD} takes features of shape {head.input_shape[1:]}, but the conv base gives "
                         f"{feature_shape} at this image.size: run `dvc repro` to rebuild the features and head")
    return head


def stack(base, head, preprocess):
    """Raw pixels -> preprocessing -> conv base -> the trained head."""
    inputs = keras.Input(base.input_shape[1:])
    # training=False keeps the base in inference mode even when its layers are unfrozen.
    outputs = head(base(VGGPreprocess(preprocess)(inputs), training=False))
    return keras.Model(inputs, outputs, name="finetuned")


def main():
    params = load_params()
    tune, size = params["finetune"], check_image_size(params["image"]["size"])
    seed_everything(tune["seed"])
    with distributed("finetune", tune):
        base = conv_base(params["base"]["weights"], size)
        model = stack(base, load_head(base.output_shape[1:]), params["base"]["preprocess"])

        def freeze():
            base.trainable = False

        phases = [Phase(tune["frozen_epochs"], tune["frozen_lr"], freeze),
                  Phase(tune["epochs"], tune["lr"], lambda: unfreeze_from(base, tune["unfreeze_from"]))]
        train("finetune", model, image_data(size, tune["batch_size"], tune["seed"]), phases, tune,
              augment=params["augment"], output="models/finetuned.keras")


if __name__ == "__main__":
    run(main)
