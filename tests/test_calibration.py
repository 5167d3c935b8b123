"""Temperature scaling: fitted on the validation predictions alone, it lowers their log loss,
moves no prediction across 0.5, and is kept beside the model for predict and the submission."""

import numpy as np
import pytest

from dogs_vs_cats.calibration import (
    calibration_file,
    fit_temperature,
    log_loss,
    read_temperature,
    scaled,
    write_calibration,
)
from dogs_vs_cats.errors import StageError


def overconfident(rng, count, temperature):
    """Labels and the probabilities of a model whose logits are `temperature` times too large."""
    labels = rng.integers(0, 2, count)
    x = rng.normal(np.where(labels == 1, 1.5, -1.5), 1.5)
    honest = 2 * 1.5 * x / 1.5**2  # the log odds of two normal classes: calibrated by construction
    return labels, 1 / (1 + np.exp(-honest * temperature))


def test_the_fitted_temperature_undoes_overconfidence_and_keeps_every_answer():
    rng = np.random.default_rng(0)
    labels, p = overconfident(rng, 4000, 3.0)
    temperature = fit_temperature(labels, p)
    assert 2.6 < temperature < 3.4
    calibrated = scaled(p, temperature)
    assert log_loss(labels, calibrated) < log_loss(labels, p) - 0.05
    np.testing.assert_array_equal(calibrated > 0.5, p > 0.5)
    for other in (temperature * 0.9, temperature * 1.1):  # a minimum: either side is worse
        assert log_loss(labels, scaled(p, other)) > log_loss(labels, calibrated)
    # An underconfident model is sharpened.
    labels, p = overconfident(rng, 4000, 0.5)
    assert 0.4 < fit_temperature(labels, p) < 0.6
    np.testing.assert_array_equal(scaled(p, 1), p)


def test_the_temperature_is_kept_beside_the_model_and_refused_when_broken(tmp_path):
    model = tmp_path / "finetuned.keras"
    assert read_temperature(model) == 1.0  # never evaluated: unchanged probabilities
    write_calibration(calibration_file(model), 1.7, 2, 0.2, 0.1, "data/split/validation")
    assert calibration_file(model) == tmp_path / "finetuned.calibration.json"
    assert read_temperature(model) == 1.7
    for broken in ('{"temperature": "hot"}', '{"temperature": 1e9}', "[", '{"views": 2}'):
        calibration_file(model).write_text(broken)
        with pytest.raises(StageError, match=r"finetuned.calibration.json is not a calibration `evaluate` wrote"):
            read_temperature(model)
