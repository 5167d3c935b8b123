"""The networks of the chapter and their building blocks, shared by the stages."""

import contextlib
import math
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from stages.common import choice, StageError

VGG16_NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"  # Keras' name for its ImageNet file
WEIGHTS_FILE = "models/vgg16_notop.weights.h5"  # what the `weights` stage writes and the VGG16 stages load
MIN_IMAGE_SIZE = 32  # VGG16 halves the input five times
SMALL_CONVNET_MIN_SIZE = 46  # four 3x3 convolutions, each followed by halving
# features.precision -> the Keras dtype policy the conv base is built with. The mixed
# policies keep float32 weights and compute in 16 bits.
PRECISION_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "mixed_float16": "mixed_float16"}
CPU_BFLOAT16_FLAGS = {"avx512_bf16", "amx_bf16"}  # /proc/cpuinfo flags of native bfloat16 arithmetic


PREPROCESS_MODES = ("vgg16", "rescale")
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
    choice(mode, PREPROCESS_MODES, "base.preprocess")
    inputs = keras.Input((None, None, 3), dtype="float32")
    if mode == "rescale":
        outputs = keras.layers.Rescaling(1 / 255, dtype="float32")(inputs)
    else:
        bgr = keras.ops.flip(inputs, axis=-1)
        outputs = keras.layers.Normalization(mean=VGG16_MEAN_BGR, variance=(1.0, 1.0, 1.0), dtype="float32")(bgr)
    return keras.Model(inputs, outputs, name="preprocess")


def count_trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def check_image_size(size):
    if not isinstance(size, int) or size < MIN_IMAGE_SIZE:
        raise StageError(f"params.yaml: image.size is {size!r}; VGG16 needs a whole number >= {MIN_IMAGE_SIZE}")
    return size


def conv_base(weights, size):
    """VGG16's convolutional base; `weights` is `none` (random) or a weights file, such as
    the `weights` stage's WEIGHTS_FILE."""
    check_image_size(size)
    shape = (size, size, 3)
    if weights in (None, "none"):
        return keras.applications.VGG16(include_top=False, weights=None, input_shape=shape)
    path = Path(weights)
    if not path.is_file():
        if path == Path(WEIGHTS_FILE):
            raise StageError(f"{WEIGHTS_FILE} not found: run `dvc repro weights` first")
        raise StageError(f"base.weights {weights} not found: use imagenet, none, or the path of a VGG16 weights file")
    try:
        return keras.applications.VGG16(include_top=False, weights=str(path), input_shape=shape)
    except Exception as e:
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise StageError(
            f"{weights} could not be loaded into VGG16's conv base ({reason}): "
            f"it must be a VGG16 include_top=False weights file (.weights.h5 or Keras' notop .h5)"
        ) from None


def has_gpu():
    return bool(tf.config.list_physical_devices("GPU"))


def cpu_flags():
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None  # not Linux: unknown
    return set(" ".join(line.split(":", 1)[1] for line in text.splitlines() if line.startswith("flags")).split())


def check_precision(precision, name="features.precision"):
    """Validate a `precision` param for this machine: an error where it cannot run, a warning where it runs slowly."""
    choice(precision, tuple(PRECISION_POLICIES), name)
    if precision == "float32" or has_gpu():
        return precision
    if precision == "mixed_float16":
        raise StageError(f"params.yaml: {name} is mixed_float16, which needs a GPU and none was found: "
                         "use bfloat16 (CPUs with AVX512_BF16 or AMX) or float32")
    flags = cpu_flags()
    if flags is not None and not flags & CPU_BFLOAT16_FLAGS:
        print(f"warning: this CPU has no native bfloat16 (avx512_bf16 or amx_bf16), so {name} "
              "bfloat16 is emulated and slower than float32", file=sys.stderr)
    return precision


@contextlib.contextmanager
def precision_policy(precision, name="features.precision"):
    """Layers built inside this block compute in `precision` (a `precision` param's value)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(PRECISION_POLICIES[check_precision(precision, name)])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


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


def augmentation(params, seed=None):
    """The book's ImageDataGenerator settings as Keras preprocessing layers (training only).

    The values keep the book's meaning: `rotation` in degrees, shifts and zoom as
    fractions of the image, `shear` as an angle in degrees (ImageDataGenerator's
    shear_range), which RandomShear takes as the tangent of that angle.
    """
    layers = []
    if params.get("horizontal_flip"):
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if params.get("rotation"):
        layers.append(keras.layers.RandomRotation(params["rotation"] / 360, fill_mode="nearest", seed=seed))
    if params.get("width_shift") or params.get("height_shift"):
        layers.append(keras.layers.RandomTranslation(params.get("height_shift", 0), params.get("width_shift", 0),
                                                     fill_mode="nearest", seed=seed))
    if params.get("shear"):
        layers.append(keras.layers.RandomShear(math.tan(math.radians(params["shear"])), 0.0,
                                               fill_mode="nearest", seed=seed))
    if params.get("zoom"):
        layers.append(keras.layers.RandomZoom(params["zoom"], fill_mode="nearest", seed=seed))
    return keras.Sequential(layers or [keras.layers.Identity()], name="augmentation")


def recast(model, policy):
    """A copy of `model` with the same weights, every layer under the dtype policy `policy`.

    Models are saved in float32, so that one trained in bfloat16 predicts the same way on
    every machine; a stage that trains a saved model further recasts it to its own precision.
    """
    if all(layer.dtype_policy.name == policy for layer in _all_layers(model)):
        return model

    def rebuild(layer):
        config = layer.get_config()
        config["dtype"] = policy
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=rebuild, recursive=True)
    copy.set_weights(model.get_weights())
    return copy


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def split_at(base, layer_name):
    """The layers of `base` before `layer_name` and from it on, as two models (weights shared).

    With the lower part frozen, its output for an image does not change during training,
    so it can be computed once and the upper part trained on it.
    """
    names = [layer.name for layer in base.layers]
    if layer_name not in names[1:]:
        raise StageError(f"params.yaml: finetune.unfreeze_from is {layer_name!r}; use one of {', '.join(names[1:])}")
    index = names.index(layer_name)
    lower = keras.Model(base.inputs, base.layers[index - 1].output, name=f"{base.name}_lower")
    inputs = keras.Input(lower.output_shape[1:])
    x = inputs
    for layer in base.layers[index:]:
        x = layer(x)
    return lower, keras.Model(inputs, x, name=f"{base.name}_upper")


def unfreeze_from(base, layer_name):
    """Make `layer_name` and every layer after it trainable, the rest frozen."""
    names = [layer.name for layer in base.layers]
    if layer_name not in names:
        raise StageError(f"params.yaml: finetune.unfreeze_from is {layer_name!r}; use one of {', '.join(names[1:])}")
    base.trainable = True
    for layer in base.layers[: names.index(layer_name)]:
        layer.trainable = False


def small_convnet(size, dropout=0.0):
    """Listing 5.5 (and, with dropout, 5.13): four conv/max-pool blocks, Dense 512, Dense 1.

    Rescaling(1/255) is the book's ImageDataGenerator(rescale=1./255), inside the model.
    """
    if size < SMALL_CONVNET_MIN_SIZE:
        raise StageError(f"params.yaml: image.size is {size}; the small convnet needs at least {SMALL_CONVNET_MIN_SIZE}")
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
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ], name="mnist")
