"""Stage `finetune` (Listings 5.22-5.23): conv base + trained head, end to end on augmented images.

The head starts from `start_from`: the features_augmented model's head (the book's
Listing 5.22 fine-tunes that model) or train_head's. Phase 1 (optional, `frozen_epochs`)
trains with the whole base frozen; phase 2 unfreezes the base from `unfreeze_from` on
and trains with a small learning rate. The model of the epoch with the lowest validation
loss is saved.

With the cache on (the default on a CPU), the layers below `unfreeze_from` run once over
the validation images and once per epoch over the augmented training images; only the
layers above them are trained on their output: the same batches and updates as end-to-end
training. `echo` > 1 reuses each pass for that many epochs (data echoing).
"""

from pathlib import Path

import keras

from stages.common import choice, load_params, run, StageError
from stages.nets import check_image_size, conv_base, feature_extractor, recast, split_at, stack, unfreeze_from, \
    WEIGHTS_FILE
from stages.training import distributed, frozen_part_data, image_data, Phase, seed_everything, train, \
    training_precision, use_cache

STARTS = {"head": ("models/head.keras", "train_head"),
          "features_augmented": ("models/features_augmented.keras", "features_augmented")}


def load_head(start_from, feature_shape):
    path, stage = STARTS[choice(start_from, tuple(STARTS), "finetune.start_from")]
    if not Path(path).is_file():
        raise StageError(f"{path} not found: run `dvc repro {stage}` first")
    head = keras.models.load_model(path)
    if start_from == "features_augmented":
        head = head.get_layer("head")
    if tuple(head.input_shape[1:]) != tuple(feature_shape):
        raise StageError(f"{path} takes features of shape {head.input_shape[1:]}, but the conv base gives "
                         f"{feature_shape} at this image.size: run `dvc repro` to rebuild it")
    return head


def main():
    params = load_params()
    tune, size = params["finetune"], check_image_size(params["image"]["size"])
    seed_everything(tune["seed"])
    cached = use_cache("finetune", tune)
    preprocess = params["base"]["preprocess"]
    with distributed("finetune", tune):
        with training_precision("finetune", tune):
            base = conv_base(WEIGHTS_FILE, size)
            head = recast(load_head(tune["start_from"], base.output_shape[1:]), keras.config.dtype_policy().name)
            model = stack(base, head, preprocess, "finetuned")

        def freeze():
            base.trainable = False

        phases = [Phase(tune["frozen_epochs"], tune["frozen_lr"], freeze),
                  Phase(tune["epochs"], tune["lr"], lambda: unfreeze_from(base, tune["unfreeze_from"]))]
        if cached:
            with training_precision("finetune", tune):
                lower, upper = split_at(base, tune["unfreeze_from"])
                inputs = keras.Input(upper.input_shape[1:])
                trainer = keras.Model(inputs, head(upper(inputs)), name="finetune_upper")
            data = frozen_part_data(feature_extractor(lower, preprocess), size, tune["batch_size"], tune["seed"],
                                    params["augment"], tune["echo"])
            train("finetune", model, data, phases, tune, trainer=trainer, output="models/finetuned.keras")
        else:
            train("finetune", model, image_data(size, tune["batch_size"], tune["seed"], False), phases, tune,
                  augment=params["augment"], output="models/finetuned.keras")


if __name__ == "__main__":
    run(main)
