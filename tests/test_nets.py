import keras
import numpy as np
import pytest
from PIL import Image

from dogs_vs_cats import precision as precisions
from dogs_vs_cats.errors import StageError
from dogs_vs_cats.features import extract
from dogs_vs_cats.nets import conv_base, dense_head, feature_extractor, preprocessing, unfreeze_from
from dogs_vs_cats.precision import precision_policy
from tests.helpers import section


def test_vgg16_base_has_the_books_parameter_count():
    base = conv_base("none", 150)
    assert base.count_params() == 14_714_688
    assert base.output_shape[1:] == (4, 4, 512)


def test_head_on_150px_features_has_the_books_trainable_count():
    assert dense_head((4, 4, 512), 256, 0.5).count_params() == 2_097_665


def test_weights_file_is_loaded_and_gives_the_same_features(tmp_path):
    keras.utils.set_random_seed(3)
    reference = conv_base("none", 32)
    weights = tmp_path / "vgg16.weights.h5"
    reference.save_weights(weights)

    loaded = conv_base(str(weights), 32)
    for ours, theirs in zip(loaded.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(ours, theirs)

    paths = random_jpegs(tmp_path, 5)
    shape = extract(feature_extractor(loaded, "vgg16"), paths, 32, 2, tmp_path / "f.npy")
    features = np.load(tmp_path / "f.npy")
    assert shape == features.shape == (5, 1, 1, 512) and features.dtype == np.float32

    from dogs_vs_cats.images import image_dataset
    images = np.concatenate(list(image_dataset(paths, 32, 5).as_numpy_iterator()))
    expected = reference.predict(keras.applications.vgg16.preprocess_input(images.copy()), verbose=0)
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-4)


def random_jpegs(folder, count, size=(40, 36)):
    paths = []
    for i in range(count):
        path = folder / f"cat.{i}.jpg"
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_bfloat16_features_are_float32_and_close_to_float32(tmp_path):
    keras.utils.set_random_seed(5)
    weights = tmp_path / "vgg16.weights.h5"
    conv_base("none", 32).save_weights(weights)
    paths = random_jpegs(tmp_path, 6)
    features = {}
    for precision in ("float32", "bfloat16"):
        with precision_policy(precision):
            model = feature_extractor(conv_base(str(weights), 32), "vgg16")
        assert keras.config.dtype_policy().name == "float32"  # the policy does not leak into other models
        conv = model.get_layer("vgg16").get_layer("block1_conv1")
        assert conv.compute_dtype == precision and conv.variable_dtype == "float32"
        assert extract(model, paths, 32, 4, tmp_path / f"{precision}.npy") == (6, 1, 1, 512)
        features[precision] = np.load(tmp_path / f"{precision}.npy")
        assert features[precision].dtype == np.float32
    difference = np.linalg.norm(features["bfloat16"] - features["float32"]) / np.linalg.norm(features["float32"])
    assert 0 < difference < 0.05


def test_unreadable_image_is_a_one_line_error_and_leaves_no_file(tmp_path):
    paths = random_jpegs(tmp_path, 4)
    (tmp_path / "cat.2.jpg").write_bytes(b"not a jpeg")
    target = tmp_path / "train_features.npy"
    with pytest.raises(StageError,
                       match=r"could not read an image among .*cat.0.jpg .. .*cat.3.jpg .*dvc repro --force split"):
        extract(feature_extractor(conv_base("none", 32), "vgg16"), paths, 32, 4, target)
    assert not target.exists() and list(tmp_path.glob(".~dogs-vs-cats-*")) == []


def test_precision_errors_and_warning(monkeypatch, capsys):
    with pytest.raises(StageError, match=r"features.precision: should be .* \(got 'float64'\)"):
        section("features", precision="float64")
    monkeypatch.setattr(precisions, "has_gpu", lambda: False)
    with pytest.raises(StageError, match="mixed_float16, which needs a GPU"):
        precisions.check_precision("mixed_float16")
    monkeypatch.setattr(precisions, "cpu_flags", lambda: {"avx2", "avx512f"})
    assert precisions.check_precision("bfloat16") == "bfloat16"
    assert "no native bfloat16" in capsys.readouterr().err
    monkeypatch.setattr(precisions, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    precisions.check_precision("bfloat16")
    assert capsys.readouterr().err == ""


def test_bad_weights_are_one_line_errors(tmp_path):
    with pytest.raises(StageError, match="base.weights .*missing.h5 not found"):
        conv_base(str(tmp_path / "missing.h5"), 32)
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(StageError, match="could not be loaded into VGG16"):
        conv_base(str(junk), 32)
    with pytest.raises(StageError, match="image.size"):
        section("image", size=16)


def test_preprocessing_modes_and_serialisation(tmp_path):
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 40, 3)).astype("float32")
    np.testing.assert_allclose(preprocessing("rescale")(images), images / 255, rtol=1e-6)
    vgg16 = keras.applications.vgg16.preprocess_input(images.copy())
    np.testing.assert_array_equal(preprocessing("vgg16")(images), vgg16)  # bit for bit
    with pytest.raises(StageError, match="base.preprocess"):
        section("base", preprocess="caffe")
    with precision_policy("bfloat16"):  # preprocessing stays float32 under a 16-bit policy
        inside = keras.Sequential([keras.Input((32, 40, 3)), preprocessing("vgg16")])
    inside.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.layers[0].name == "preprocess" and not loaded.count_params()
    np.testing.assert_array_equal(loaded(images), vgg16)


def test_unfreeze_from_block5():
    base = conv_base("none", 32)
    unfreeze_from(base, "block5_conv1")
    trainable = [layer.name for layer in base.layers if layer.trainable and layer.weights]
    assert trainable == ["block5_conv1", "block5_conv2", "block5_conv3"]
    assert sum(int(np.prod(w.shape)) for w in base.trainable_weights) == 7_079_424
    with pytest.raises(StageError, match="finetune.unfreeze_from"):
        section("finetune", unfreeze_from="block9_conv1")


def test_chapter_models_have_the_books_parameter_counts():
    from dogs_vs_cats.nets import count_trainable, frozen_base_classifier, mnist_convnet, small_convnet
    assert small_convnet(150).count_params() == 3_453_121
    assert small_convnet(150, dropout=0.5).count_params() == 3_453_121
    model = frozen_base_classifier(conv_base("none", 150), "vgg16", 256)
    assert model.count_params() == 16_812_353 and count_trainable(model) == 2_097_665
    mnist = mnist_convnet()
    conv_counts = [layer.count_params() for layer in mnist.layers if isinstance(layer, keras.layers.Conv2D)]
    assert conv_counts == [320, 18_496, 36_928] and sum(conv_counts) == 55_744
    assert mnist.count_params() == 93_322
    with pytest.raises(StageError, match="small convnet needs at least 46"):
        section("image", size=40)


def test_weights_of_another_network_a_folder_or_nan_values_are_one_line_errors(tmp_path, recwarn):
    other = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3), keras.layers.Conv2D(5, 3)])
    other.save_weights(tmp_path / "other.weights.h5")
    recwarn.clear()
    with pytest.raises(StageError, match="other.weights.h5 could not be loaded into VGG16"):
        conv_base(str(tmp_path / "other.weights.h5"), 32)
    assert [str(w.message)[:60] for w in recwarn] == []  # not Keras' warning per layer before the error
    (tmp_path / "folder.h5").mkdir()
    with pytest.raises(StageError, match="base.weights .*folder.h5 is a folder: use imagenet"):
        conv_base(str(tmp_path / "folder.h5"), 32)
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    kernel, bias = base.get_layer("block3_conv2").get_weights()
    kernel[0, 0, 0, 0] = np.nan
    base.get_layer("block3_conv2").set_weights([kernel, bias])
    base.save_weights(tmp_path / "nan.weights.h5")
    with pytest.raises(StageError, match=r"nan.weights.h5 holds NaN or infinite values \(in block3_conv2/kernel\)"):
        conv_base(str(tmp_path / "nan.weights.h5"), 32)
