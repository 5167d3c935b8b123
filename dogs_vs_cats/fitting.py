"""How a convnet of the chapter is trained on the split's images: the one call behind the
stages' listings, which turns the stage's levers (the frozen-part cache, echo, views,
precision, distribute) into the data and the model the training loop runs on."""

import keras

from dogs_vs_cats.batches import image_data
from dogs_vs_cats.cache import frozen_part_data, pool_dtype, use_cache
from dogs_vs_cats.nets import feature_extractor, split_at
from dogs_vs_cats.outputs import scratch_dir
from dogs_vs_cats.training import train, training_precision


def frozen_split(base, head, trainable_from):
    """The frozen lower part of `base` and the model trained above it: the head alone when
    the whole base stays frozen (`trainable_from` None), else the layers from
    `trainable_from` on with the head on top (their weights shared with `base`)."""
    if trainable_from is None:
        return base, head
    lower, upper = split_at(base, trainable_from)
    inputs = keras.Input(upper.input_shape[1:])
    return lower, keras.Model(inputs, head(upper(inputs)), name=f"{head.name}_over_{trainable_from}")


def fit_images(stage, model, phases, params, split_dir, *, output, logs, base=None, trainable_from=None,
               augment=None):
    """Train `model` (built under `training_precision`) on the training images of `split_dir`
    through `phases`, and save it to `output` with its DVCLive log in `logs`.

    `base` is the pretrained conv base inside `model`, frozen below `trainable_from` (None:
    frozen whole) in every phase; `augment` the `augment` params for training images (None:
    the pictures as they are). With the frozen-part cache on (`use_cache`), the frozen part
    runs once over the validation images and once per epoch (or per `echo` epochs, or into a
    pool of `views`) over the augmented training images, and only what sits above it trains
    on its output: the same batches and updates as end to end. Without a base, the cache
    keeps the decoded images in memory instead of reading them every epoch.
    """
    own, size = getattr(params, stage), params.image.size
    if base is None:
        data = image_data(size, own.batch_size, own.seed, use_cache(own.cache), split_dir)
        return train(stage, model, data, phases, own, augment=augment, output=output, logs=logs)
    if use_cache(own.cache, own.echo, own.views, own.distribute):
        with training_precision(stage, own):
            lower, trainer = frozen_split(base, model.get_layer("head"), trainable_from)
        # A pool too large for memory lives beside the model while it trains, in the
        # precision the layers above read it in (bfloat16 rows are what they cast to anyway).
        with scratch_dir(output) as pool_dir:
            data = frozen_part_data(feature_extractor(lower, params.base.preprocess), size, own.batch_size, own.seed,
                                    augment, own.echo, own.views, split_dir, pool_dir, pool_dtype(own.precision))
            return train(stage, model, data, phases, own, trainer=trainer, output=output, logs=logs)
    data = image_data(size, own.batch_size, own.seed, False, split_dir)
    return train(stage, model, data, phases, own, augment=augment, output=output, logs=logs)
