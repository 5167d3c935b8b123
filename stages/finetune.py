"""Stage `finetune` (Listings 5.22-5.23): conv base + trained head, end to end on augmented images.

    python -m stages.finetune SPLIT WEIGHTS START MODEL LOGS
    (dvc.yaml: data/split models/vgg16_notop.weights.h5 models/${finetune.start_from}.keras
     models/finetuned.keras dvclive/finetune)

The head starts from START, the model `start_from` names: the features_augmented model's
head (the book's Listing 5.22 fine-tunes that model) or train_head's. Phase 1 (optional,
`frozen_epochs`) trains with the whole base frozen; phase 2 unfreezes the base from
`unfreeze_from` on and trains with a small learning rate. The model of the epoch with
the lowest validation loss is saved.

With the cache on (the default on a CPU), the layers below `unfreeze_from` run once over
the validation images and once per epoch over the augmented training images; only the
layers above them are trained on their output: the same batches and updates as end-to-end
training. `echo` > 1 reuses each pass for that many epochs (data echoing); `views` > 0 keeps
that many passes and draws each later epoch's features from them.
"""

import keras

from dogs_vs_cats.cache import frozen_part_data, use_cache
from dogs_vs_cats.config import load_params
from dogs_vs_cats.nets import conv_base, feature_extractor, load_head, split_at, stack, unfreeze_from
from dogs_vs_cats.precision import recast
from dogs_vs_cats.stage import run
from dogs_vs_cats.training import distributed, image_data, Phase, seed_everything, train, training_precision


def main(split_dir, weights, start, model_file, logs):
    params = load_params()
    tune, size, preprocess = params.finetune, params.image.size, params.base.preprocess
    seed_everything(tune.seed)
    with distributed("finetune", tune):
        with training_precision("finetune", tune):
            base = conv_base(weights, size)
            head = recast(load_head(start, base.output_shape[1:]), keras.config.dtype_policy().name)
            model = stack(base, head, preprocess, "finetuned")

        def freeze():
            base.trainable = False

        phases = [Phase(tune.frozen_epochs, tune.frozen_lr, freeze),
                  Phase(tune.epochs, tune.lr, lambda: unfreeze_from(base, tune.unfreeze_from))]
        if use_cache(tune.cache, tune.echo, tune.views):
            with training_precision("finetune", tune):
                lower, upper = split_at(base, tune.unfreeze_from)
                inputs = keras.Input(upper.input_shape[1:])
                trainer = keras.Model(inputs, head(upper(inputs)), name="finetune_upper")
            data = frozen_part_data(feature_extractor(lower, preprocess), size, tune.batch_size, tune.seed,
                                    params.augment, tune.echo, tune.views, split_dir)
            train("finetune", model, data, phases, tune, trainer=trainer, output=model_file, logs=logs)
        else:
            train("finetune", model, image_data(size, tune.batch_size, tune.seed, False, split_dir), phases, tune,
                  augment=params.augment, output=model_file, logs=logs)


if __name__ == "__main__":
    run(main, inputs=("SPLIT", "WEIGHTS", "START"), outputs=("MODEL", "LOGS"))
