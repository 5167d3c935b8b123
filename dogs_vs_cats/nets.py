"""The networks of the chapter and their building blocks."""

import warnings
from pathlib import Path

import keras
import numpy as np

from dogs_vs_cats.catalog import WEIGHTS_FILE
from dogs_vs_cats.errors import not_a_file, StageError

VGG16_MEAN_BGR = (103.939, 116.779, 123.68)  # keras.applications.vgg16.preprocess_input's ImageNet mean


def preprocessing(mode):
    """Pixel values 0..255 in, the conv base's expected input out, as a small model named
    `preprocess`.

    `vgg16`: keras.applications.vgg16.preprocess_input (RGB->BGR, minus the ImageNet
    mean), what the ImageNet weights were trained with. `rescale`: the 1st edition's
    1/255, kept to reproduce the book exactly. Built from Keras' own layers and ops only,
    so a saved model loads with `keras.models.load_model` where this project is not
    installed. It always computes in float32.
    """
    inputs = keras.Input((None, None, 3), dtype="float32")
    if mode == "rescale":
        outputs = keras.layers.Rescaling(1 / 255, dtype="float32")(inputs)
    else:
        bgr = keras.ops.flip(inputs, axis=-1)
        outputs = keras.layers.Normalization(mean=VGG16_MEAN_BGR, variance=(1.0, 1.0, 1.0), dtype="float32")(bgr)
    return keras.Model(inputs, outputs, name="preprocess")


def count_trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def conv_base(weights, size):
    """VGG16's convolutional base; `weights` is `none` (random) or a weights file, such as
    the `weights` stage's output, catalog.WEIGHTS_FILE)."""
    shape = (size, size, 3)
    if weights in (None, "none"):
        return keras.applications.VGG16(include_top=False, weights=None, input_shape=shape)
    path = Path(weights)
    if not path.is_file():
        if path == WEIGHTS_FILE and not path.exists():
            raise StageError(f"{WEIGHTS_FILE} not found: run `dvc repro weights` first")
        raise StageError(f"base.weights {weights} {not_a_file(path)}: use imagenet, none, "
                         f"or the path of a VGG16 weights file")
    try:
        with warnings.catch_warnings():  # a file of another network: a warning per layer, then the error
            warnings.simplefilter("ignore")
            base = keras.applications.VGG16(include_top=False, weights=str(path), input_shape=shape)
    except Exception as e:
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise StageError(
            f"{weights} could not be loaded into VGG16's conv base ({reason}): "
            f"it must be a VGG16 include_top=False weights file (.weights.h5 or Keras' notop .h5)"
        ) from None
    bad = next((w.path for w in base.weights if not np.isfinite(keras.ops.convert_to_numpy(w)).all()), None)
    if bad:
        raise StageError(f"{weights} holds NaN or infinite values (in {bad}): the file is damaged; "
                         f"use Keras' ImageNet file (base.weights: imagenet) or another copy")
    return base


def feature_extractor(base, preprocess):
    """Raw pixels -> preprocessing -> conv base: what the `features` stage runs.

    Preprocessing runs in float32 and the features come out as float32 whatever
    precision the base computes in.
    """
    inputs = keras.Input(base.input_shape[1:])
    features = base(preprocessing(preprocess)(inputs), training=False)
    outputs = keras.layers.Activation("linear", dtype="float32", name="features")(features)
    return keras.Model(inputs, outputs, name="feature_extractor")


def dense_head(feature_shape, units, dropout=0.0):
    """The classifier on conv-base features: Flatten, Dense, Dropout (Listing 5.18; none in
    Listing 5.20), Dense."""
    layers = [keras.Input(feature_shape), keras.layers.Flatten(), keras.layers.Dense(units, activation="relu")]
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(1, activation="sigmoid"))
    return keras.Sequential(layers, name="head")


def split_at(base, layer_name):
    """The layers of `base` before `layer_name` and from it on, as two models (weights shared).

    With the lower part frozen, its output for an image does not change during training,
    so it can be computed once and the upper part trained on it.
    """
    index = [layer.name for layer in base.layers].index(layer_name)
    lower = keras.Model(base.inputs, base.layers[index - 1].output, name=f"{base.name}_lower")
    inputs = keras.Input(lower.output_shape[1:])
    x = inputs
    for layer in base.layers[index:]:
        x = layer(x)
    return lower, keras.Model(inputs, x, name=f"{base.name}_upper")


def unfreeze_from(base, layer_name):
    """Make `layer_name` and every layer after it trainable, the rest frozen (None: all frozen)."""
    if layer_name is None:
        base.trainable = False
        return
    names = [layer.name for layer in base.layers]
    base.trainable = True
    for layer in base.layers[: names.index(layer_name)]:
        layer.trainable = False


def small_convnet(size, dropout=0.0):
    """Listing 5.5 (and, with dropout, 5.13): four conv/max-pool blocks, Dense 512, Dense 1.

    Rescaling(1/255) is the book's ImageDataGenerator(rescale=1./255), inside the model.
    `size` is at least 46 (the schema checks image.size).
    """
    layers = [keras.Input((size, size, 3)), keras.layers.Rescaling(1 / 255)]
    for filters in (32, 64, 128, 128):
        layers += [keras.layers.Conv2D(filters, 3, activation="relu"), keras.layers.MaxPooling2D(2)]
    layers.append(keras.layers.Flatten())
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    layers += [keras.layers.Dense(512, activation="relu"), keras.layers.Dense(1, activation="sigmoid")]
    return keras.Sequential(layers, name="scratch_augmented" if dropout else "scratch")


def stack(base, head, preprocess, name):
    """Raw pixels -> preprocessing -> conv base -> head, one end-to-end model."""
    inputs = keras.Input(base.input_shape[1:])
    # training=False keeps the base in inference mode even when its layers are unfrozen.
    outputs = head(base(preprocessing(preprocess)(inputs), training=False))
    return keras.Model(inputs, outputs, name=name)


def frozen_base_classifier(base, preprocess, units):
    """Listing 5.20: the conv base, frozen, under Flatten, Dense(units), Dense(1), end to end."""
    base.trainable = False
    return stack(base, dense_head(base.output_shape[1:], units), preprocess, "features_augmented")


def mnist_convnet():
    """Listings 5.1-5.2: three conv layers (55,744 parameters) and a dense head (93,322 in all)."""
    return keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Rescaling(1 / 255), keras.layers.Conv2D(32, 3, activation="relu"),
         keras.layers.MaxPooling2D(2), keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(2),
         keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.Flatten(),
         keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10, activation="softmax")],
        name="mnist",
    )


def load_head(path, feature_shape):
    """The dense head saved at `path` (train_head's model, or the `head` layer of
    features_augmented's), checked to take features of `feature_shape`, and in the dtype
    policy of the models built around it (saved models are float32: see `recast`)."""
    path = Path(path)
    if not path.is_file():
        raise StageError(f"{path} not found: run `dvc repro` for the stage that trains it first")
    head = keras.models.load_model(path)
    if "head" in [layer.name for layer in head.layers]:
        head = head.get_layer("head")
    if tuple(head.input_shape[1:]) != tuple(feature_shape):
        raise StageError(f"{path} takes features of shape {head.input_shape[1:]}, but the conv base gives "
                         f"{feature_shape} at this image.size: run `dvc repro` to rebuild it")
    return recast(head, keras.config.dtype_policy().name)


def recast(model, policy):
    """A copy of `model` with the same weights, every layer under the dtype policy `policy`.

    Models are saved in float32, so that one trained in bfloat16 predicts the same way on
    every machine; a stage that trains a saved model further recasts it to its own precision.
    """
    if all(layer.dtype_policy.name == policy for layer in all_layers(model)):
        return model

    def rebuild(layer):
        config = layer.get_config()
        if isinstance(layer, keras.layers.Layer):  # not an op such as preprocessing's keras.ops.flip
            config["dtype"] = policy
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=rebuild, recursive=True)
    copy.set_weights(model.get_weights())
    return copy


def all_layers(model):
    """Every layer of `model`, those of nested models included, outermost first."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)
