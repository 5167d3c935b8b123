"""Temperature scaling (Guo et al., 2017): P(dog) made honest without changing any answer.

A model trained to a low loss on its training photos is over-confident on new ones, and
log loss charges a confident mistake dearly. Dividing the logit by one number T, fitted to
the validation photos' log loss, softens (T > 1) or sharpens (T < 1) every probability
alike: no prediction crosses 0.5, so accuracy, the ROC curve and its AUC stay as they are.
The test photos never take part in the fit.
"""

import json
from pathlib import Path

import numpy as np

from dogs_vs_cats.errors import StageError
from dogs_vs_cats.outputs import write_json

EPSILON = 1e-7  # Keras' clip, so the log loss is binary_crossentropy's
BOUNDS = (0.05, 20.0)  # temperatures searched: beyond them a model is broken, not miscalibrated


def logits(probabilities):
    p = np.clip(np.asarray(probabilities, np.float64), EPSILON, 1 - EPSILON)
    return np.log(p) - np.log1p(-p)


def scaled(probabilities, temperature):
    """`probabilities` with their logits divided by `temperature` (1: unchanged)."""
    if temperature == 1:
        return np.asarray(probabilities, np.float64)
    return 1 / (1 + np.exp(-logits(probabilities) / temperature))


def log_loss(labels, probabilities):
    p = np.clip(np.asarray(probabilities, np.float64), EPSILON, 1 - EPSILON)
    y = np.asarray(labels, np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def fit_temperature(labels, probabilities):
    """The temperature that minimises the log loss of `probabilities` against 0/1 `labels`:
    golden-section search on log T (the loss is convex in 1/T), to 1e-4 relative."""
    z = logits(probabilities)
    y = np.asarray(labels, np.float64)

    def loss(log_t):
        # log(1 + e^-x) for the right class, written stably
        margin = np.where(y > 0.5, z, -z) / np.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, -margin)))

    low, high = np.log(BOUNDS[0]), np.log(BOUNDS[1])
    ratio = (np.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    while high - low > 1e-4:
        if loss_a < loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - ratio * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = loss(b)
    return round(float(np.exp((low + high) / 2)), 4)


def calibration_file(model_path):
    """Where a model's temperature is kept: beside it, models/<name>.calibration.json."""
    model_path = Path(model_path)
    return model_path.with_name(f"{model_path.stem}.calibration.json")


def write_calibration(path, temperature, views, validation_loss, calibrated_loss, fitted_on):
    """The temperature `evaluate` fitted, with what it was fitted on, at `path`."""
    write_json(path, {
        "temperature": temperature, "views": views, "fitted_on": str(fitted_on),
        "validation_loss": round(validation_loss, 6), "validation_loss_calibrated": round(calibrated_loss, 6)})


def read_temperature(model_path):
    """The temperature kept beside the model at `model_path`, or 1 where none is (a model
    never evaluated, or a file given by path alone)."""
    path = calibration_file(model_path)
    if not path.is_file():
        return 1.0
    try:
        temperature = json.loads(path.read_text())["temperature"]
        if not (isinstance(temperature, (int, float)) and BOUNDS[0] <= temperature <= BOUNDS[1]):
            raise ValueError(f"temperature {temperature!r} outside {BOUNDS[0]}..{BOUNDS[1]}")
    except (ValueError, KeyError, TypeError, OSError) as e:
        raise StageError(f"{path} is not a calibration `evaluate` wrote ({e}): remove it, or run "
                         f"`dvc repro` for the model's evaluate stage to fit it again") from None
    return float(temperature)
