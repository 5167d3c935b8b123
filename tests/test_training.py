import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from dogs_vs_cats.errors import StageError
from dogs_vs_cats.nets import dense_head
from dogs_vs_cats.training import distributed, Phase, train
from tests.helpers import section


def separable_features(rng, count=48):
    x = rng.normal(size=(count, 1, 1, 8)).astype("float32")
    return x, (x[:, 0, 0, 0] > 0).astype("float32")


def test_mirrored_strategy_builds_and_trains_on_cpu(tmp_path, monkeypatch, rng):
    monkeypatch.chdir(tmp_path)
    params = {"distribute": "mirrored", "seed": 1}
    x, y = separable_features(rng)
    with distributed("train_head", params) as strategy:
        assert isinstance(strategy, tf.distribute.MirroredStrategy) and strategy.num_replicas_in_sync == 1
        model = dense_head((1, 1, 8), 16, 0.0)
        assert isinstance(model.weights[0].value, tf.distribute.DistributedValues)
        before = model.get_weights()
        train("train_head", model, {"x": x, "y": y, "batch_size": 8, "validation_data": (x, y)},
              [Phase(3, 1e-2)], params, output=tmp_path / "head.keras")
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    metrics = json.loads((tmp_path / "dvclive/train_head/metrics.json").read_text())
    assert metrics["step"] == 2 and metrics["train"]["accuracy"] > 0.5
    loaded = keras.models.load_model(tmp_path / "head.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_default_strategy_and_bad_values(rng):
    with distributed("scratch", {"distribute": "none"}) as strategy:
        assert strategy is tf.distribute.get_strategy() and strategy.num_replicas_in_sync == 1
    with pytest.raises(StageError, match=r"scratch.distribute: should be 'none' or 'mirrored' \(got 'horovod'\)"):
        section("scratch", distribute="horovod")
