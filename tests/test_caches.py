"""The book-schedule levers: every cache trains exactly like the plain path; early stopping
stops and keeps the best epoch; data echoing reuses features; bfloat16 models save as float32."""

import json

import keras
import numpy as np
import pytest
import yaml
from PIL import Image

from dogs_vs_cats.cache import frozen_part_data
from dogs_vs_cats.catalog import WEIGHTS_FILE
from dogs_vs_cats.errors import StageError
from dogs_vs_cats.images import array_dataset, image_dataset, list_images, load_images
from dogs_vs_cats.nets import dense_head
from dogs_vs_cats.training import Phase, train
from tests.helpers import section
from tests.workspace import REPO, stage_paths, update_params


def write_split(root, per_class=(("train", 6), ("validation", 4)), seed=0):
    """data/split with noisy pictures: cats darker than dogs, so there is something to learn."""
    rng = np.random.default_rng(seed)
    index = 0
    for split, count in per_class:
        for folder, kind, level in (("cats", "cat", 70), ("dogs", "dog", 170)):
            directory = root / "data/split" / split / folder
            directory.mkdir(parents=True, exist_ok=True)
            for _ in range(count):
                pixels = np.clip(rng.normal(level, 40, (int(rng.integers(30, 60)), 40, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(directory / f"{kind}.{index}.jpg", quality=90)
                index += 1


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A folder with params.yaml (tiny settings) and data/split, as the current directory."""
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    update_params(tmp_path / "params.yaml", {
        "image": {"size": 48}, "base": {"weights": "none"},
        "scratch": {"epochs": 2, "batch_size": 4},
        "features_augmented": {"epochs": 2, "batch_size": 4, "units": 8},
        "finetune": {"epochs": 2, "batch_size": 4},
    })
    write_split(tmp_path)
    monkeypatch.chdir(tmp_path)
    from stages import weights
    weights.main(WEIGHTS_FILE)  # base.weights none: the seeded random base the VGG16 stages load
    return tmp_path


def set_params(section, **values):
    update_params("params.yaml", {section: values})


def val_losses(stage):
    with open(f"dvclive/{stage}/plots/metrics/eval/loss.tsv") as f:
        return [float(line.split("\t")[-1]) for line in f.read().splitlines()[1:]]


def run_stage(module, section, **values):
    set_params(section, **values)
    keras.backend.clear_session()
    module.main(*stage_paths(section))
    return val_losses(section)


def test_images_kept_in_memory_equal_images_decoded_from_disk(project):
    paths, labels = list_images("train")
    decoded = np.concatenate(list(image_dataset(paths, 48, 5).as_numpy_iterator()))
    kept = load_images(paths, 48)
    assert kept.dtype == np.uint8 and kept.shape == (12, 48, 48, 3)
    np.testing.assert_array_equal(decoded, kept.astype(np.float32))
    # The same seed shuffles both pipelines into the same order, every epoch.
    from_disk = image_dataset(paths, 48, 4, labels, shuffle_seed=3)
    in_memory = array_dataset(kept, 4, labels, shuffle_seed=3)
    for _ in range(2):
        for (a, ya), (b, yb) in zip(from_disk, in_memory):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
            np.testing.assert_array_equal(ya.numpy(), yb.numpy())


def test_scratch_with_images_in_memory_trains_like_decoding_every_epoch(project):
    from stages import scratch
    plain = run_stage(scratch, "scratch", cache=False)
    cached = run_stage(scratch, "scratch", cache=True)
    assert len(plain) == 2
    np.testing.assert_allclose(cached, plain, rtol=1e-5)


def test_frozen_part_cache_trains_like_end_to_end(project):
    from stages import features_augmented, finetune
    for stage, module in (("features_augmented", features_augmented), ("finetune", finetune)):
        # finetune: both paths start from the features_augmented model the cached run just saved
        end_to_end = run_stage(module, stage, cache=False)
        cached = run_stage(module, stage, cache=True)
        assert len(cached) == 2 and len(set(cached)) == 2  # it trained: the loss moved
        np.testing.assert_allclose(cached, end_to_end, rtol=1e-5)


def test_frozen_features_equal_the_frozen_models_output(project):
    from dogs_vs_cats.nets import conv_base, feature_extractor
    extractor = feature_extractor(conv_base("none", 48), "vgg16")
    data = frozen_part_data(extractor, 48, 4, seed=1, augment={}, echo=1)(0)
    val_paths, val_labels = list_images("validation")
    features, labels = data["validation_data"]
    direct = extractor.predict(image_dataset(val_paths, 48, 4), verbose=0)
    np.testing.assert_allclose(features, direct, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(labels, val_labels)


def test_echo_reuses_each_pass_for_that_many_epochs(project):
    from dogs_vs_cats.nets import conv_base, feature_extractor
    extractor = feature_extractor(conv_base("none", 48), "vgg16")
    augment = {"horizontal_flip": True, "rotation": 40}
    echoed = frozen_part_data(extractor, 48, 4, seed=1, augment=augment, echo=2)
    first, second, third = echoed(0), echoed(1), echoed(2)
    assert second["x"] is first["x"] and not first["shuffle"] and second["shuffle"]
    assert third["x"] is not first["x"] and not np.allclose(third["x"], first["x"])  # fresh augmentations
    # The schema states the rules, in params.yaml's one line of errors.
    with pytest.raises(StageError, match=r"finetune.echo is 2 but the cache is off"):
        section("finetune", cache=False, echo=2)
    with pytest.raises(StageError, match=r"finetune.echo: should be greater than or equal to 1 \(got 0\)"):
        section("finetune", cache=True, echo=0)
    with pytest.raises(StageError, match=r"scratch.cache: should be 'auto', True or False \(got 'yes'\)"):
        section("scratch", cache="yes")


def test_early_stopping_stops_and_keeps_the_best_epoch(tmp_path, monkeypatch, rng):
    monkeypatch.chdir(tmp_path)
    x = rng.normal(size=(64, 1, 1, 8)).astype("float32")
    y = (x[:, 0, 0, 0] > 0).astype("float32")
    # Validation labels are the opposite rule: the better the fit, the worse val_loss gets.
    data = {"x": x, "y": y, "batch_size": 16, "validation_data": (x, 1 - y)}
    keras.utils.set_random_seed(0)
    model = dense_head((1, 1, 8), 16)
    params = {"seed": 0, "early_stopping": 2}
    saved = train("train_head", model, data, [Phase(30, 1e-2)], params, output=tmp_path / "head.keras")
    summary = json.loads((tmp_path / "dvclive/train_head/metrics.json").read_text())
    losses = val_losses("train_head")
    assert summary["epochs_run"] == len(losses) == summary["best_epoch"] + 2 < 30
    assert summary["best_epoch"] == int(np.argmin(losses)) + 1
    timing = json.loads((tmp_path / "dvclive/train_head/timing.json").read_text())
    assert 0 < timing["epoch_s"] < timing["train_time_s"] and timing["first_epoch_s"] > 0
    assert not {"epoch_s", "train_time_s", "first_epoch_s"} & set(summary)  # wall times are not metrics
    kept = keras.models.load_model(tmp_path / "head.keras").evaluate(x, 1 - y, verbose=0)[0]
    assert kept == pytest.approx(min(losses), rel=1e-4)
    assert saved.evaluate(x, 1 - y, verbose=0)[0] == pytest.approx(min(losses), rel=1e-4)
    with pytest.raises(StageError, match=r"train_head.early_stopping: should be greater than or equal to 0"):
        section("train_head", early_stopping=-1)


def test_bfloat16_training_saves_a_float32_model(project):
    from stages import scratch
    run_stage(scratch, "scratch", precision="bfloat16", epochs=1)
    model = keras.models.load_model("models/scratch.keras")
    policies = {layer.dtype_policy.name for layer in model.layers}
    assert policies == {"float32"}
    summary = yaml.safe_load(open("dvclive/scratch/params.yaml"))
    assert summary["precision"] == "bfloat16"
