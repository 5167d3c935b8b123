"""Stage `evaluate`: every model on the test set.

Writes metrics/evaluate.json ({model: {loss, accuracy, precision, recall, roc_auc,
confusion}}) and, per model, the ROC curve and the per-image confusion data under
metrics/eval/ for `dvc plots`.
"""

from pathlib import Path

import keras
import numpy as np

from stages import nets  # noqa: F401  (registers VGGPreprocess for load_model)
from stages.common import load_params, run, StageError, write_json
from stages.images import image_dataset, list_images

METRICS = Path("metrics/evaluate.json")
PLOTS_DIR = Path("metrics/eval")
FEATURES_DIR = Path("data/features")
CLASS_NAMES = ("cat", "dog")


def roc_curve(labels, scores):
    """False/true positive rates at every distinct threshold, highest threshold first."""
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tps = np.cumsum(labels)[last_of_tie]
    fps = (1 + last_of_tie) - tps
    positives, negatives = labels.sum(), len(labels) - labels.sum()
    tpr = np.r_[0.0, tps / positives] if positives else np.zeros(len(tps) + 1)
    fpr = np.r_[0.0, fps / negatives] if negatives else np.zeros(len(fps) + 1)
    return fpr, tpr, np.r_[np.inf, scores[last_of_tie]]


def binary_metrics(labels, probabilities, threshold=0.5):
    labels = np.asarray(labels, dtype=np.float64).ravel()
    probabilities = np.asarray(probabilities, dtype=np.float64).ravel()
    clipped = np.clip(probabilities, 1e-7, 1 - 1e-7)  # Keras' epsilon
    loss = -np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped))
    predicted = probabilities > threshold
    actual = labels > 0.5
    tp, fp = int(np.sum(predicted & actual)), int(np.sum(predicted & ~actual))
    fn, tn = int(np.sum(~predicted & actual)), int(np.sum(~predicted & ~actual))
    fpr, tpr, _ = roc_curve(labels, probabilities)
    return {
        "loss": round(float(loss), 6),
        "accuracy": round((tp + tn) / len(labels), 6),
        "precision": round(tp / (tp + fp), 6) if tp + fp else 0.0,
        "recall": round(tp / (tp + fn), 6) if tp + fn else 0.0,
        "roc_auc": round(float(np.trapezoid(tpr, fpr)), 6),
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }


def write_plots(name, labels, probabilities):
    fpr, tpr, thresholds = roc_curve(np.asarray(labels, float), np.asarray(probabilities, float))
    roc = [{"fpr": round(float(f), 6), "tpr": round(float(t), 6), "threshold": round(float(min(h, 1.0)), 6)}
           for f, t, h in zip(fpr, tpr, thresholds)]
    write_json(PLOTS_DIR / "roc" / f"{name}.json", {"roc": roc})
    rows = [{"actual": CLASS_NAMES[int(a)], "predicted": CLASS_NAMES[int(p > 0.5)]}
            for a, p in zip(labels, probabilities)]
    write_json(PLOTS_DIR / "confusion" / f"{name}.json", {"confusion": rows})


def load_model(path):
    if not Path(path).is_file():
        raise StageError(f"{path} not found: run `dvc repro {Path(path).stem}` first")
    return keras.models.load_model(path)


def predict_head(batch_size):
    features_path, labels_path = FEATURES_DIR / "test_features.npy", FEATURES_DIR / "test_labels.npy"
    if not features_path.is_file():
        raise StageError(f"{features_path} not found: run `dvc repro features` first")
    model = load_model("models/head.keras")
    features = np.load(features_path, mmap_mode="r")
    return np.load(labels_path), model.predict(features, batch_size=batch_size, verbose=0).ravel()


def predict_images(model_path, size, batch_size):
    model = load_model(model_path)
    paths, labels = list_images("test")
    return np.asarray(labels), model.predict(image_dataset(paths, size, batch_size), verbose=0).ravel()


def main():
    params = load_params()
    size, batch_size = params["image"]["size"], params["evaluate"]["batch_size"]
    results = {}
    for name, predict in [("head", lambda: predict_head(batch_size)),
                          ("finetuned", lambda: predict_images("models/finetuned.keras", size, batch_size))]:
        labels, probabilities = predict()
        results[name] = binary_metrics(labels, probabilities)
        write_plots(name, labels, probabilities)
        print(f"{name}: accuracy {results[name]['accuracy']:.4f}, loss {results[name]['loss']:.4f}, "
              f"ROC AUC {results[name]['roc_auc']:.4f}")
    write_json(METRICS, results)


if __name__ == "__main__":
    run(main)
