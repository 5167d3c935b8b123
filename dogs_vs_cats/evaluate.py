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

from dogs_vs_cats.catalog import CLASSES
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


def test_data(test, batch_size, model):
    """(names, labels, model inputs) of the test set at `test`: a folder of features
    (test_features.npy, test_labels.npy) or of pictures (cats/, dogs/)."""
    from dogs_vs_cats.images import image_dataset, list_images
    test = Path(test)
    features, labels = test / "test_features.npy", test / "test_labels.npy"
    if features.is_file() and labels.is_file():
        labels = np.load(labels).astype(np.int64)
        return [f"test feature {i}" for i in range(len(labels))], labels, np.load(features, mmap_mode="r")
    if test.name == "features":
        raise StageError(f"{features} not found: run `dvc repro features` first")
    paths, labels = list_images(test.name, test.parent)
    return [Path(p).name for p in paths], np.asarray(labels), image_dataset(paths, model.input_shape[1], batch_size)


def check_inputs(model, model_path, inputs, test):
    """StageError unless the test set's inputs have the shape the model takes (the head
    takes features, the others pictures): Keras' own error is a traceback deep in predict."""
    spec = inputs.element_spec if hasattr(inputs, "element_spec") else inputs
    given, expected = tuple(spec.shape[1:]), tuple(model.input_shape[1:])
    if len(given) != len(expected) or any(None not in (g, e) and g != e for g, e in zip(given, expected)):
        raise StageError(f"{model_path} takes inputs of shape {expected}, but {test} gives {given}: evaluate the "
                         f"head on data/features and the other models on data/split/test, as dvc.yaml does")


def evaluate(model_path, test, output, batch_size):
    """Evaluate the model at `model_path` on `test`; write OUTPUT; return its metrics."""
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
    names, labels, inputs = test_data(test, batch_size, model)
    check_inputs(model, model_path, inputs, test)
    probabilities = model.predict(inputs, batch_size=None if hasattr(inputs, "element_spec") else batch_size,
                                  verbose=0).ravel().astype(np.float64)
    if len(probabilities) != len(labels):
        raise StageError(f"{model_path} gave {len(probabilities)} predictions for {len(labels)} test labels in {test}: "
                         f"run `dvc repro` to rebuild what is stale")
    results = binary_metrics(labels, probabilities)
    with atomic_dir(output) as tmp:
        with Live(str(tmp), dvcyaml=False, save_dvc_exp=False) as live:
            for key, value in results.items():
                if key == "confusion":
                    for cell, count in value.items():
                        live.log_metric(f"confusion/{cell}", count, plot=False)
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
    return results


def finite_thresholds(path):
    """scikit-learn's first ROC threshold is +inf, which strict JSON readers (the VS Code
    extension, browsers) reject as `Infinity`: it becomes 1, the highest probability."""
    import json

    data = json.loads(path.read_text())
    for row in data["roc"]:
        row["threshold"] = min(row["threshold"], 1.0)
    write_json(path, data)
