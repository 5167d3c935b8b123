"""One model of the chapter on the test set: scikit-learn's metrics, DVCLive's plots and
every test image's prediction.

The test set is a folder of pictures (cats/, dogs/; resized to the model's own input
size) or of cached VGG16 features (test_features.npy, test_labels.npy, as the head
takes). The output folder gets, with DVCLive: metrics.json ({loss, accuracy, precision,
recall, roc_auc, confusion}), the ROC, precision-recall and confusion-matrix data under
plots/sklearn/ (`Live.log_sklearn_plot`, what `dvc plots` draws), and predictions.json,
the dog probability of every test image.
"""

from pathlib import Path

import numpy as np

from dogs_vs_cats.calibration import calibration_file, fit_temperature, log_loss, scaled, write_calibration
from dogs_vs_cats.catalog import CLASSES, MODELS
from dogs_vs_cats.errors import StageError
from dogs_vs_cats.nets import count_trainable
from dogs_vs_cats.outputs import atomic_dir, write_json


def binary_metrics(labels, probabilities, threshold=0.5):
    """Test metrics of dog probabilities against 0/1 labels, from scikit-learn."""
    from sklearn import metrics
    labels = np.asarray(labels, dtype=np.int64).ravel()
    probabilities = np.asarray(probabilities, dtype=np.float64).ravel()
    predicted = (probabilities > threshold).astype(np.int64)
    tn, fp, fn, tp = (int(n) for n in metrics.confusion_matrix(labels, predicted, labels=[0, 1]).ravel())
    both_classes = len(np.unique(labels)) == 2
    return {
        # Keras' epsilon, so the loss is binary_crossentropy's
        "loss": round(float(metrics.log_loss(labels, np.clip(probabilities, 1e-7, 1 - 1e-7), labels=[0, 1])), 6),
        "accuracy": round(float(metrics.accuracy_score(labels, predicted)), 6),
        "precision": round(float(metrics.precision_score(labels, predicted, zero_division=0)), 6),
        "recall": round(float(metrics.recall_score(labels, predicted, zero_division=0)), 6),
        "roc_auc": round(float(metrics.roc_auc_score(labels, probabilities)), 6) if both_classes else 0.0,
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }


def test_data(test, batch_size, model, split="test"):
    """(names, labels, model inputs, image paths or None) of one split at `test`: a folder of
    features (<split>_features.npy, <split>_labels.npy) or of pictures (cats/, dogs/)."""
    from dogs_vs_cats.images import image_dataset, list_images
    test = Path(test)
    features, labels = test / f"{split}_features.npy", test / f"{split}_labels.npy"
    if features.is_file() and labels.is_file():
        labels = np.load(labels).astype(np.int64)
        return [f"{split} feature {i}" for i in range(len(labels))], labels, np.load(features, mmap_mode="r"), None
    if test.name == "features":
        raise StageError(f"{features} not found: run `dvc repro features` first")
    paths, labels = list_images(test.name, test.parent)
    return ([Path(p).name for p in paths], np.asarray(labels), image_dataset(paths, model.input_shape[1], batch_size),
            paths)


def predictions(model, inputs, paths, batch_size, views=1):
    """P(dog) of every input: Keras' predict, or with `views` > 1 (pictures only) the mean
    over the test-time augmentation views `predict` and the submission average."""
    from dogs_vs_cats.images import image_dataset
    from dogs_vs_cats.predict import predict_batch
    if views > 1 and paths is not None:
        return np.concatenate([predict_batch(model, batch.numpy(), views)
                               for batch in image_dataset(paths, model.input_shape[1], batch_size)])
    return model.predict(inputs, batch_size=None if hasattr(inputs, "element_spec") else batch_size,
                         verbose=0).ravel().astype(np.float64)


def check_inputs(model, model_path, inputs, test):
    """StageError unless the test set's inputs have the shape the model takes (the head
    takes features, the others pictures): Keras' own error is a traceback deep in predict."""
    spec = inputs.element_spec if hasattr(inputs, "element_spec") else inputs
    given, expected = tuple(spec.shape[1:]), tuple(model.input_shape[1:])
    if len(given) != len(expected) or any(None not in (g, e) and g != e for g, e in zip(given, expected)):
        raise StageError(f"{model_path} takes inputs of shape {expected}, but {test} gives {given}: evaluate the "
                         f"head on data/features and the other models on data/split/test, as dvc.yaml does")


def not_finite(model_path, probabilities):
    """StageError when the model gives NaN or infinite outputs (weights a diverged training
    left), before scikit-learn fails on them with "Input contains NaN"."""
    bad = int(np.count_nonzero(~np.isfinite(probabilities)))
    if bad:
        stage = next((entry.stage for entry in MODELS if entry.file == Path(model_path)), None)
        retrain = f"`dvc repro {stage}`" if stage else "training it again"
        raise StageError(f"{model_path} gives {bad} of {len(probabilities)} outputs that are not finite (NaN or "
                         f"infinite): its training diverged; retrain it with a lower learning rate ({retrain})")


def evaluate(model_path, test, output, batch_size, validation=None, views=1, calibration=None):
    """Evaluate the model at `model_path` on `test`; write OUTPUT; return its metrics.

    With `views` > 1, a model that takes pictures is also scored on the mean over that many
    test-time augmentation views (`tta` in the metrics). With `validation` (the validation
    split, as `test` is the test split), a temperature is fitted on the validation photos'
    predictions, with the same views, and the test log loss after it is reported
    (`calibrated`); it is written to `calibration` (beside the model: `predict` and the
    submission apply it). The test photos never take part in the fit."""
    import keras
    from dvclive import Live
    model_path = Path(model_path)
    if not model_path.is_file():
        raise StageError(f"{model_path} not found: run `dvc repro` for the stage that trains it first")
    try:
        model = keras.models.load_model(model_path)
    except Exception as e:
        raise StageError(f"{model_path} could not be loaded ({(str(e).splitlines() or [type(e).__name__])[0][:200]}): "
                         f"run `dvc repro` for the stage that trains it") from None
    names, labels, inputs, paths = test_data(test, batch_size, model)
    check_inputs(model, model_path, inputs, test)
    probabilities = predictions(model, inputs, paths, batch_size)
    if len(probabilities) != len(labels):
        raise StageError(f"{model_path} gave {len(probabilities)} predictions for {len(labels)} test labels in {test}: "
                         f"run `dvc repro` to rebuild what is stale")
    not_finite(model_path, probabilities)
    results = binary_metrics(labels, probabilities)
    views = views if paths is not None else 1  # cached features have no views to average
    served = probabilities  # what predict and the submission give, before the temperature
    if views > 1:
        served = predictions(model, inputs, paths, batch_size, views)
        tta = binary_metrics(labels, served)
        results["tta"] = {"views": views, "accuracy": tta["accuracy"], "loss": tta["loss"]}
    if validation is not None:
        _, val_labels, val_inputs, val_paths = test_data(validation, batch_size, model, "validation")
        check_inputs(model, model_path, val_inputs, validation)
        val_served = predictions(model, val_inputs, val_paths, batch_size, views)
        not_finite(model_path, val_served)
        temperature = fit_temperature(val_labels, val_served)
        results["calibrated"] = {"temperature": temperature, "views": views,
                                 "loss": binary_metrics(labels, scaled(served, temperature))["loss"]}
    with atomic_dir(output) as tmp:
        with Live(str(tmp), dvcyaml=False, save_dvc_exp=False) as live:
            for key, value in results.items():
                if isinstance(value, dict):  # confusion, tta, calibrated
                    for name, figure in value.items():
                        live.log_metric(f"{key}/{name}", figure, plot=False)
                else:
                    live.log_metric(key, value, plot=False)
            live.log_metric("parameters", model.count_params(), plot=False)
            live.log_metric("trainable_parameters", count_trainable(model), plot=False)
            live.log_sklearn_plot("roc", labels, probabilities, drop_intermediate=False)
            live.log_sklearn_plot("precision_recall", labels, probabilities, drop_intermediate=False)
            class_names = np.asarray(CLASSES)
            live.log_sklearn_plot(
                "confusion_matrix", class_names[labels], class_names[(probabilities > 0.5).astype(int)]
            )
        finite_thresholds(Path(tmp) / "plots/sklearn/roc.json")
        write_json(Path(tmp) / "predictions.json",
                   {"predictions": [{"image": name, "label": int(label), "probability": round(float(p), 6)}
                   for name, label, p in zip(names, labels, probabilities)]})
    if validation is not None:
        write_calibration(calibration or calibration_file(model_path), temperature, views,
                          log_loss(val_labels, val_served), log_loss(val_labels, scaled(val_served, temperature)),
                          validation)
    return results


def finite_thresholds(path):
    """scikit-learn's first ROC threshold is +inf, which strict JSON readers (the VS Code
    extension, browsers) reject as `Infinity`: it becomes 1, the highest probability."""
    import json

    data = json.loads(path.read_text())
    for row in data["roc"]:
        row["threshold"] = min(row["threshold"], 1.0)
    write_json(path, data)
