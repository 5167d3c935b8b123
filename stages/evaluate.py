"""Stage `evaluate`: every Dogs vs. Cats model of the chapter on the test set.

Writes metrics/evaluate.json ({model: {loss, accuracy, precision, recall, roc_auc,
confusion}}), per model the ROC curve and the per-image confusion data under
metrics/eval/ for `dvc plots`, and metrics/summary.md, the chapter's ladder in one table.
"""

import json
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np

from stages.nets import count_trainable
from stages.common import atomic_file, load_params, run, StageError, write_json
from stages.images import image_dataset, list_images

METRICS = Path("metrics/evaluate.json")
SUMMARY = Path("metrics/summary.md")
PLOTS_DIR = Path("metrics/eval")
FEATURES_DIR = Path("data/features")
CLASS_NAMES = ("cat", "dog")


class ModelInfo(NamedTuple):
    name: str          # its key in evaluate.json
    stage: str         # the stage that trains it
    source: str        # what it reads: "images" (data/split/test) or "features" (the cached test features)
    what: str          # the book's listings, in words
    book_accuracy: float
    book_epochs: int


MODELS = [
    ModelInfo("scratch", "scratch", "images", "Listing 5.5: small convnet from scratch", 0.71, 30),
    ModelInfo("scratch_augmented", "scratch_augmented", "images", "Listings 5.13-5.14: + dropout, augmentation", 0.82, 100),
    ModelInfo("head", "train_head", "features", "Listing 5.18: dense head on cached VGG16 features", 0.90, 30),
    ModelInfo("features_augmented", "features_augmented", "images",
              "Listings 5.20-5.21: frozen VGG16 + head, augmentation", 0.96, 30),
    ModelInfo("finetuned", "finetune", "images", "Listings 5.22-5.23: block5 fine-tuned", 0.97, 100),
]
MODEL_FILES = {"head": "models/head.keras", "finetuned": "models/finetuned.keras"}


def _counts_by_threshold(labels, scores):
    """Distinct thresholds, highest first, with the true and false positives at each."""
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tps = np.cumsum(labels)[last_of_tie]
    return scores[last_of_tie], tps, (1 + last_of_tie) - tps


def roc_curve(labels, scores):
    """False/true positive rates at every distinct threshold, highest threshold first."""
    thresholds, tps, fps = _counts_by_threshold(labels, scores)
    positives, negatives = labels.sum(), len(labels) - labels.sum()
    tpr = np.r_[0.0, tps / positives] if positives else np.zeros(len(tps) + 1)
    fpr = np.r_[0.0, fps / negatives] if negatives else np.zeros(len(fps) + 1)
    return fpr, tpr, np.r_[np.inf, thresholds]


def precision_recall_curve(labels, scores):
    """Precision and recall at every distinct threshold, highest threshold first."""
    thresholds, tps, fps = _counts_by_threshold(labels, scores)
    positives = labels.sum()
    recall = tps / positives if positives else np.zeros(len(tps))
    return tps / (tps + fps), recall, thresholds


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


def _records(**columns):
    return [{key: round(float(value), 6) for key, value in zip(columns, row)} for row in zip(*columns.values())]


def write_plots(name, images, labels, probabilities):
    """ROC, precision-recall, per-image confusion and per-image predictions, for `dvc plots`."""
    labels, probabilities = np.asarray(labels, float), np.asarray(probabilities, float)
    fpr, tpr, thresholds = roc_curve(labels, probabilities)
    write_json(PLOTS_DIR / "roc" / f"{name}.json", {"roc": _records(fpr=fpr, tpr=tpr, threshold=np.minimum(thresholds, 1))})
    precision, recall, thresholds = precision_recall_curve(labels, probabilities)
    write_json(PLOTS_DIR / "pr" / f"{name}.json", {"pr": _records(recall=recall, precision=precision, threshold=thresholds)})
    rows = [{"actual": CLASS_NAMES[int(a)], "predicted": CLASS_NAMES[int(p > 0.5)]} for a, p in zip(labels, probabilities)]
    write_json(PLOTS_DIR / "confusion" / f"{name}.json", {"confusion": rows})
    predictions = [{"image": image, "label": int(a), "probability": round(float(p), 6)}
                   for image, a, p in zip(images, labels, probabilities)]
    write_json(PLOTS_DIR / "predictions" / f"{name}.json", {"predictions": predictions})


def model_path(name):
    return Path(MODEL_FILES.get(name, f"models/{name}.keras"))


def load_model(name, stage):
    path = model_path(name)
    if not path.is_file():
        raise StageError(f"{path} not found: run `dvc repro {stage}` first")
    return keras.models.load_model(path)


def predict(model, source, size, batch_size):
    """Test labels and predicted dog probabilities, on cached features or on the test images."""
    if source == "features":
        features_path = FEATURES_DIR / "test_features.npy"
        if not features_path.is_file():
            raise StageError(f"{features_path} not found: run `dvc repro features` first")
        features = np.load(features_path, mmap_mode="r")
        return np.load(FEATURES_DIR / "test_labels.npy"), model.predict(features, batch_size=batch_size, verbose=0).ravel()
    paths, labels = list_images("test")
    return np.asarray(labels), model.predict(image_dataset(paths, size, batch_size), verbose=0).ravel()


def training_summary(stage):
    """What the stage's DVCLive summary says: train_time_s, epochs_run, best_epoch."""
    path = Path(f"dvclive/{stage}/metrics.json")
    return json.loads(path.read_text()) if path.is_file() else {}


def epochs_text(summary, book_epochs):
    run = summary.get("epochs_run", summary.get("step", -1) + 1)
    best = summary.get("best_epoch")
    return f"{run} of {book_epochs}" + (f" (best {best})" if best else "")


def summary_table(results, parameters):
    lines = ["| model | what | epochs run of the book's (best) | test accuracy | book | parameters (trainable) "
             "| training time |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for model in MODELS:
        total, trainable = parameters[model.name]
        summary = training_summary(model.stage)
        seconds = summary.get("train_time_s")
        time_text = f"{seconds / 60:.1f} min" if seconds is not None else "-"
        lines.append(f"| `{model.name}` | {model.what} | {epochs_text(summary, model.book_epochs)} | "
                     f"{results[model.name]['accuracy']:.1%} | {model.book_accuracy:.0%} | "
                     f"{total:,} ({trainable:,}) | {time_text} |")
    return "\n".join(lines) + "\n"


def data_description(archive):
    if archive == "data/sample/train.zip":
        return "the synthetic sample (`data/sample/train.zip`, drawn shapes, not photos)"
    return f"`{archive}`"


def main():
    params = load_params()
    size, batch_size = params["image"]["size"], params["evaluate"]["batch_size"]
    results, parameters = {}, {}
    test_images = [Path(path).name for path in list_images("test")[0]]  # the order of features and images alike
    for name, stage, source, *_ in MODELS:
        model = load_model(name, stage)
        labels, probabilities = predict(model, source, size, batch_size)
        results[name] = binary_metrics(labels, probabilities)
        parameters[name] = (model.count_params(), count_trainable(model))
        write_plots(name, test_images, labels, probabilities)
        print(f"{name}: accuracy {results[name]['accuracy']:.4f}, loss {results[name]['loss']:.4f}, "
              f"ROC AUC {results[name]['roc_auc']:.4f}")
    write_json(METRICS, results)
    with atomic_file(SUMMARY) as tmp:
        tmp.write_text(f"# Test accuracy, model by model ({len(labels)} test images)\n\n"
                       f"Data: {data_description(params['data']['archive'])}.\n\n"
                       + summary_table(results, parameters))


if __name__ == "__main__":
    run(main)
