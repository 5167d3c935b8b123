import json
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from dogs_vs_cats.batches import ArrayBatches
from dogs_vs_cats.distribute import training_scope
from dogs_vs_cats.errors import StageError
from dogs_vs_cats.nets import dense_head
from dogs_vs_cats.training import Phase, train
from tests.helpers import section


def separable_features(rng, count=48):
    x = rng.normal(size=(count, 1, 1, 8)).astype("float32")
    return x, (x[:, 0, 0, 0] > 0).astype("float32")


def test_mirrored_strategy_builds_and_trains_on_cpu(tmp_path, monkeypatch, rng):
    monkeypatch.chdir(tmp_path)
    params = {"distribute": "mirrored", "seed": 1}
    x, y = separable_features(rng)
    with training_scope("train_head", params) as strategy:
        assert isinstance(strategy, tf.distribute.MirroredStrategy) and strategy.num_replicas_in_sync == 1
        model = dense_head((1, 1, 8), 16, 0.0)
        assert isinstance(model.weights[0].value, tf.distribute.DistributedValues)
        before = model.get_weights()
        train("train_head", model, {"x": ArrayBatches(x, y, 8), "validation_data": (x, y), "validation_batch_size": 8},
              [Phase(3, 1e-2)], params, output=tmp_path / "head.keras")
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    metrics = json.loads((tmp_path / "dvclive/train_head/metrics.json").read_text())
    assert metrics["step"] == 2 and metrics["train"]["accuracy"] > 0.5
    loaded = keras.models.load_model(tmp_path / "head.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_default_strategy_and_bad_values(rng):
    with training_scope("scratch", {"distribute": "none"}) as strategy:
        assert strategy is tf.distribute.get_strategy() and strategy.num_replicas_in_sync == 1
    with pytest.raises(StageError, match=r"scratch.distribute: should be 'none' or 'mirrored' \(got 'horovod'\)"):
        section("scratch", distribute="horovod")


def test_how_keras_iterates_a_py_dataset():
    """What EpochBatches relies on, as Keras 3.15 does it with one worker: fit() reads batches
    0 and 1 to learn their shapes and calls on_epoch_end once before its first epoch; then,
    every epoch, the batches 0..n-1 in order after the callbacks' on_epoch_begin and none
    of the next epoch before it (so a callback can say which epoch they are for). An
    upgrade that changes this fails here before it silently changes the batch order."""
    calls = []

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, index):
            calls.append(("get", index))
            time.sleep(0.02)  # time for a prefetch running ahead to show
            return np.zeros((2, 1), "float32"), np.zeros((2,), "float32")

        def on_epoch_end(self):
            calls.append(("end",))

    class Epochs(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            calls.append(("begin", epoch))

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    batches = Batches()
    epoch = [("begin",), ("get", 0), ("get", 1), ("get", 2), ("end",)]
    for first in (0, 2):  # two fit() calls, as two phases
        calls.clear()
        model.fit(batches, initial_epoch=first, epochs=first + 2, shuffle=False, verbose=0, callbacks=[Epochs()])
        shapes_read = [("get", 0), ("get", 1), ("end",)]
        assert [call[:1] if call[0] == "begin" else call for call in calls] == shapes_read + 2 * epoch
        assert [call[1] for call in calls if call[0] == "begin"] == [first, first + 1]


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_the_logged_learning_rate_follows_lr_schedule(tmp_path, monkeypatch, rng, schedule):
    monkeypatch.chdir(tmp_path)
    x, y = separable_features(rng, 16)
    phases = [Phase(2, 1e-2), Phase(3, 1e-3)]  # two phases, as finetune's: each decays from its own rate
    train("train_head", dense_head((1, 1, 8), 4), {"x": ArrayBatches(x, y, 8), "validation_data": (x, y),
                                                  "validation_batch_size": 8},
          phases, {"seed": 0, "lr_schedule": schedule}, output=tmp_path / "head.keras")
    lines = (tmp_path / "dvclive/train_head/plots/metrics/lr.tsv").read_text().splitlines()
    logged = [float(line.split("\t")[-1]) for line in lines[1:]]
    if schedule == "cosine":
        expected = [1e-2, 1e-2 / 2, 1e-3, 1e-3 * 0.75, 1e-3 * 0.25]  # (1 + cos(pi k / n)) / 2 of each phase's rate
    else:
        expected = [1e-2, 1e-2, 1e-3, 1e-3, 1e-3]
    np.testing.assert_allclose(logged, expected, rtol=1e-6)
    assert not (tmp_path / "dvclive/train_head/plots/metrics/train/learning_rate.tsv").exists()  # logged once
    with pytest.raises(StageError, match=r"mnist.lr_schedule: should be 'constant' or 'cosine' \(got 'step'\)"):
        section("mnist", lr_schedule="step")
