"""The book-schedule levers: every cache trains exactly like the plain path; early stopping
stops and keeps the best epoch; data echoing and a pool of views reuse features; bfloat16
models save as float32."""

import json
import os
import signal
import time

import keras
import numpy as np
import pytest
import yaml
from PIL import Image

from dogs_vs_cats.batches import ArrayBatches, FileBatches
from dogs_vs_cats.cache import frozen_part_data, FrozenFeatureBatches
from dogs_vs_cats.catalog import WEIGHTS_FILE
from dogs_vs_cats.errors import StageError
from dogs_vs_cats.images import image_dataset, list_images, load_images
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
    # The same seed draws the same batches from both, every epoch.
    from_disk, in_memory = FileBatches(paths, labels, 48, 5, seed=3), ArrayBatches(kept, labels, 5, seed=3)
    assert len(from_disk) == len(in_memory) == 3
    for epoch in range(2):
        from_disk.epoch = in_memory.epoch = epoch
        for index in range(3):
            (a, ya), (b, yb) = from_disk[index], in_memory[index]
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(ya, yb)


class Recorder:
    """Wraps a function and records, per call, the epoch its batches were drawn for and the
    labels' tags it was given."""

    def __init__(self, batches, function):
        self.batches, self.function, self.calls = batches, function, []

    def __call__(self, x):
        self.calls.append((self.batches.epoch, [tag(image) for image in np.asarray(x)]))
        return self.function(x)


def tag(image):
    return int(round(float(np.asarray(image).reshape(-1)[0])))


def test_batch_order_is_the_permutation_of_seed_and_epoch_on_both_paths(tmp_path, monkeypatch):
    """Across two phases, the batches the trainer gets in epoch e are the
    examples in the order of default_rng((seed, e)).permutation, on the plain path (images
    in memory) and on the frozen-part cache (whose augmenter runs over them in that order,
    once per fresh epoch; echoed epochs reorder the same features)."""
    monkeypatch.chdir(tmp_path)
    count, batch_size, seed = 10, 4, 7
    images = np.broadcast_to(np.arange(count, dtype=np.uint8)[:, None, None, None], (count, 2, 2, 3)).copy()
    labels = (np.arange(count) % 2).astype(np.float32)
    phases = [Phase(2, 1e-3), Phase(3, 1e-3)]

    def permutation(epoch):
        return list(np.random.default_rng((seed, epoch)).permutation(count))

    plain = ArrayBatches(images, labels, batch_size, seed)
    seen = Recorder(plain, plain.batch)
    plain.batch = seen
    model = keras.Sequential([keras.Input((2, 2, 3)), keras.layers.Flatten(), keras.layers.Dense(1, "sigmoid")])
    train("scratch", model, {"x": plain}, phases, {"seed": seed}, output=tmp_path / "plain.keras",
          logs=tmp_path / "plain")
    by_epoch = {}
    for epoch, tags in seen.calls:
        by_epoch.setdefault(epoch, []).append(tags)
    # The training loop reads every batch of an epoch once, in order.
    assert sorted(by_epoch) == list(range(5))
    for epoch, batches in by_epoch.items():
        assert sum(batches, []) == permutation(epoch)

    cached = FrozenFeatureBatches(images, labels, batch_size, seed, None, echo=2)
    embedded = Recorder(cached, keras.ops.convert_to_tensor)  # the identity as the frozen part
    cached.embed = embedded
    given = Recorder(cached, lambda x: x)
    cached_batch = cached.batch
    cached.batch = lambda indices: given(cached_batch(indices))
    model = keras.Sequential([keras.Input((2, 2, 3)), keras.layers.Flatten(), keras.layers.Dense(1, "sigmoid")])
    train("scratch", model, {"x": cached}, phases, {"seed": seed}, output=tmp_path / "cached.keras",
          logs=tmp_path / "cached")
    # The augmenter ran over the fresh epochs (0, 2, 4) only, batch by batch in their order.
    assert [epoch for epoch, _ in embedded.calls] == [0] * 3 + [2] * 3 + [4] * 3
    for fresh in (0, 2, 4):
        assert sum([tags for epoch, tags in embedded.calls if epoch == fresh], []) == permutation(fresh)
    trained = {}
    for epoch, tags in given.calls:
        trained.setdefault(epoch, []).append(tags)
    for epoch, batches in trained.items():
        assert sum(batches, []) == permutation(epoch)


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
    data = frozen_part_data(extractor, 48, 4, seed=1, augment={}, echo=1)
    val_paths, val_labels = list_images("validation")
    features, labels = data["validation_data"]
    direct = extractor.predict(image_dataset(val_paths, 48, 4), verbose=0)
    np.testing.assert_allclose(features, direct, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(labels, val_labels)
    # Without augmentation, an epoch's training features are the extractor's output in that epoch's order.
    train_paths, _ = list_images("train")
    batches = data["x"]
    order = np.random.default_rng((1, 0)).permutation(len(train_paths))
    first, _ = batches[0]
    np.testing.assert_allclose(first, extractor.predict(image_dataset([train_paths[i] for i in order[:4]], 48, 4),
                                                        verbose=0), rtol=1e-5, atol=1e-6)


def test_echo_reuses_each_pass_for_that_many_epochs(project):
    from dogs_vs_cats.nets import conv_base, feature_extractor
    extractor = feature_extractor(conv_base("none", 48), "vgg16")
    augment = {"horizontal_flip": True, "rotation": 40}
    batches = frozen_part_data(extractor, 48, 4, seed=1, augment=augment, echo=2)["x"]
    passes, firsts = [], []
    for epoch in range(3):
        batches.epoch = epoch
        firsts.append(batches[0][0])
        passes.append(batches.features)
    assert passes[1] is passes[0]  # epoch 1 reuses epoch 0's features, in its own order
    order = np.random.default_rng((1, 1)).permutation(batches.count)
    np.testing.assert_array_equal(firsts[1], passes[0][order[:4]])
    assert passes[2] is not passes[0] and not np.allclose(passes[2], passes[0])  # fresh augmentations
    # The schema states the rules, in params.yaml's one line of errors.
    with pytest.raises(StageError, match=r"finetune.echo is 2 but the cache is off"):
        section("finetune", cache=False, echo=2)
    with pytest.raises(StageError, match=r"finetune.echo: should be greater than or equal to 1 \(got 0\)"):
        section("finetune", cache=True, echo=0)
    with pytest.raises(StageError, match=r"scratch.cache: should be 'auto', True or False \(got 'yes'\)"):
        section("scratch", cache="yes")


def test_a_pool_of_views_runs_that_many_passes_then_draws_each_image_from_them():
    count, batch_size, seed, views = 10, 4, 7, 3
    images = np.broadcast_to(np.arange(count, dtype=np.float32)[:, None, None, None], (count, 2, 2, 3)).copy()
    labels = (np.arange(count) % 2).astype(np.float32)

    def pooled_batches():
        batches = FrozenFeatureBatches(images, labels, batch_size, seed, None, views=views)
        # The frozen part as a probe: each image's tag plus 100 times the pass that computed it.
        batches.embed = Recorder(batches, lambda x: keras.ops.convert_to_tensor(x + 100 * batches.pooled))
        return batches

    def epoch_rows(batches, epoch):
        batches.epoch = epoch
        return np.concatenate([batches[index][0][:, 0, 0, 0] for index in range(len(batches))])

    batches = pooled_batches()
    rows = {epoch: epoch_rows(batches, epoch) for epoch in range(8)}
    # views passes in all, each over its own epoch's order, and none after.
    assert [epoch for epoch, _ in batches.embed.calls] == [0] * 3 + [1] * 3 + [2] * 3
    for epoch, row in rows.items():
        order = np.random.default_rng((seed, epoch)).permutation(count)
        np.testing.assert_array_equal(row % 100, order)  # every image once, in the epoch's order
        if epoch < views:
            assert set(row // 100) == {epoch}  # a fresh pass, as without views
        else:
            assert set(row // 100) <= set(range(views)) and len(set(row // 100)) > 1  # images from several passes
    assert not np.array_equal(rows[3], rows[4]) and not np.array_equal(rows[4] // 100, rows[5] // 100)
    # The same seed draws the same views.
    again = pooled_batches()
    np.testing.assert_array_equal(epoch_rows(again, 6), rows[6])


def test_views_as_many_as_the_epochs_train_like_fresh_passes(project):
    from stages import features_augmented
    fresh = run_stage(features_augmented, "features_augmented", cache=True, views=0)
    pooled = run_stage(features_augmented, "features_augmented", cache=True, views=2)
    assert len(fresh) == 2
    np.testing.assert_allclose(pooled, fresh, rtol=1e-5)
    with pytest.raises(StageError, match=r"finetune.echo is 2 and views is 3: both reuse passes"):
        section("finetune", cache=True, echo=2, views=3)
    with pytest.raises(StageError, match=r"finetune.views is 3 but the cache is off"):
        section("finetune", cache=False, views=3)
    with pytest.raises(StageError, match=r"features_augmented.views: should be greater than or equal to 0 \(got -1\)"):
        section("features_augmented", cache=True, views=-1)


def test_early_stopping_stops_and_keeps_the_best_epoch(tmp_path, monkeypatch, rng):
    monkeypatch.chdir(tmp_path)
    x = rng.normal(size=(64, 1, 1, 8)).astype("float32")
    y = (x[:, 0, 0, 0] > 0).astype("float32")
    # Validation labels are the opposite rule: the better the fit, the worse val_loss gets.
    data = {"x": ArrayBatches(x, y, 16), "validation_data": (x, 1 - y), "validation_batch_size": 16}
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


def test_a_pool_on_disk_gives_the_rows_and_the_weights_of_the_pool_in_memory(project, monkeypatch):
    from dogs_vs_cats import cache
    from stages import features_augmented
    in_memory = run_stage(features_augmented, "features_augmented", cache=True, views=1, epochs=3)
    weights = keras.models.load_model("models/features_augmented.keras").get_weights()
    written = []
    monkeypatch.setattr(cache, "POOL_IN_MEMORY_BYTES", 0)
    monkeypatch.setattr(cache.Pool, "write", lambda pool, *args, original=cache.Pool.write: (
        written.append(pool.folder), original(pool, *args))[1])
    on_disk = run_stage(features_augmented, "features_augmented", cache=True, views=1, epochs=3)
    assert written and all(folder is not None for folder in written)  # the rows went to files
    np.testing.assert_array_equal(on_disk, in_memory)
    for disk, memory in zip(keras.models.load_model("models/features_augmented.keras").get_weights(), weights):
        np.testing.assert_array_equal(disk, memory)
    assert not [path.name for path in project.joinpath("models").iterdir() if path.name.startswith(".~")]


def test_a_pool_on_disk_keeps_bfloat16_rows_and_draws_like_memory(tmp_path):
    import ml_dtypes
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(2, 6, 3, 3, 4)).astype(ml_dtypes.bfloat16)
    from dogs_vs_cats.cache import Pool
    pools = [Pool(2, 6, (3, 3, 4), ml_dtypes.bfloat16), Pool(2, 6, (3, 3, 4), ml_dtypes.bfloat16, tmp_path)]
    for pool in pools:
        for view in range(2):
            order = rng.permutation(6)
            pool.write(view, order, rows[view, order])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["view-0.bin", "view-1.bin"]
    assert tmp_path.joinpath("view-0.bin").stat().st_size == 6 * 3 * 3 * 4 * 2  # two bytes a value
    views, indices = np.array([1, 0, 1, 1]), np.array([5, 0, 2, 5])
    read = [pool.read(views, indices) for pool in pools]
    assert read[1].dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(read[1].astype(np.float32), read[0].astype(np.float32))
    np.testing.assert_array_equal(read[1].astype(np.float32), rows[views, indices].astype(np.float32))


def test_an_interrupted_pool_leaves_nothing_behind_and_the_previous_model(project, monkeypatch):
    from dogs_vs_cats import cache
    from stages import features_augmented
    run_stage(features_augmented, "features_augmented", cache=True, views=2)
    before = project.joinpath("models/features_augmented.keras").read_bytes()
    monkeypatch.setattr(cache, "POOL_IN_MEMORY_BYTES", 0)
    calls = []

    def write(pool, view, indices, rows, original=cache.Pool.write):
        calls.append(view)
        if view == 1 and calls.count(1) == 1:  # Ctrl-C during the second pass, half-written
            os.kill(os.getpid(), signal.SIGINT)  # to the main thread, as a terminal sends it
            time.sleep(1)
        original(pool, view, indices, rows)
    monkeypatch.setattr(cache.Pool, "write", write)
    with pytest.raises(KeyboardInterrupt):
        run_stage(features_augmented, "features_augmented", cache=True, views=2)
    assert 1 in calls
    assert project.joinpath("models/features_augmented.keras").read_bytes() == before
    assert not [path.name for path in project.joinpath("models").iterdir() if path.name.startswith(".~")]
