"""Stage `summary`: the chapter's ladder in one place, from every model's evaluation and training log.

Reads metrics/eval/<model>/metrics.json (the `evaluate@<model>` stages) and each training
stage's DVCLive log, and writes:
- metrics/evaluate.json: {model: {loss, accuracy, precision, recall, roc_auc, confusion}};
- metrics/summary.md: the model-by-model table against the book;
- metrics/ladder.json: test accuracy of every model next to the book's, for `dvc plots`;
- metrics/curves/<stage>.json: Listing 5.24's smoothed curves (`curves.smoothing`, the
  book's 0.8): per epoch, training and validation accuracy and loss, raw and smoothed.
"""

import csv
import json
from pathlib import Path
from typing import NamedTuple

from stages.common import atomic_file, load_params, run, StageError, write_json

EVAL_DIR = Path("metrics/eval")
METRICS = Path("metrics/evaluate.json")
SUMMARY = Path("metrics/summary.md")
LADDER = Path("metrics/ladder.json")
CURVES_DIR = Path("metrics/curves")
SERIES = {"accuracy": "train/accuracy", "val_accuracy": "eval/accuracy", "loss": "train/loss", "val_loss": "eval/loss"}


class ModelInfo(NamedTuple):
    name: str          # its key in evaluate.json, its file models/<name>.keras, its folder metrics/eval/<name>
    stage: str         # the stage that trains it (and its DVCLive folder dvclive/<stage>)
    what: str          # the book's listings, in words
    book_accuracy: float
    book_epochs: int


MODELS = [
    ModelInfo("scratch", "scratch", "Listing 5.5: small convnet from scratch", 0.71, 30),
    ModelInfo("scratch_augmented", "scratch_augmented", "Listings 5.13-5.14: + dropout, augmentation", 0.82, 100),
    ModelInfo("head", "train_head", "Listing 5.18: dense head on cached VGG16 features", 0.90, 30),
    ModelInfo("features_augmented", "features_augmented", "Listings 5.20-5.21: frozen VGG16 + head, augmentation",
              0.96, 30),
    ModelInfo("finetuned", "finetune", "Listings 5.22-5.23: block5 fine-tuned", 0.97, 100),
]


def read_json(path, stage):
    path = Path(path)
    if not path.is_file():
        raise StageError(f"{path} not found: run `dvc repro {stage}` first")
    return json.loads(path.read_text())


def smooth(points, factor=0.8):
    """Listing 5.24: each point becomes previous * factor + point * (1 - factor)."""
    smoothed = []
    for point in points:
        smoothed.append(smoothed[-1] * factor + point * (1 - factor) if smoothed else point)
    return smoothed


def read_series(stage, name):
    path = Path(f"dvclive/{stage}/plots/metrics/{name}.tsv")
    if not path.is_file():
        raise StageError(f"{path} not found: run `dvc repro {stage}` first")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [int(row["step"]) for row in rows], [float(row[Path(name).name]) for row in rows]


def stage_curves(stage, factor):
    columns = {}
    for column, name in SERIES.items():
        steps, values = read_series(stage, name)
        columns[column] = values
        columns[f"smoothed_{column}"] = smooth(values, factor)
    return [{"step": step, **{key: round(values[i], 6) for key, values in columns.items()}}
            for i, step in enumerate(steps)]


def epochs_text(training, book_epochs):
    epochs = training.get("epochs_run", training.get("step", -1) + 1)
    best = training.get("best_epoch")
    return f"{epochs} of {book_epochs}" + (f" (best {best})" if best else "")


def summary_table(results, training):
    lines = ["| model | what | epochs run of the book's (best) | test accuracy | book | parameters (trainable) "
             "| training time |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for model in MODELS:
        result, log = results[model.name], training[model.name]
        seconds = log.get("train_time_s")
        time_text = f"{seconds / 60:.1f} min" if seconds is not None else "-"
        lines.append(f"| `{model.name}` | {model.what} | {epochs_text(log, model.book_epochs)} | "
                     f"{result['accuracy']:.1%} | {model.book_accuracy:.0%} | "
                     f"{result['parameters']:,} ({result['trainable_parameters']:,}) | {time_text} |")
    return "\n".join(lines) + "\n"


def ladder_rows(results):
    """Two bars per model, this run's test accuracy and the book's, in the ladder's order."""
    rows = []
    for rung, model in enumerate(MODELS, start=1):
        rows.append({"model": f"{rung} {model.name}", "source": "this run", "accuracy": results[model.name]["accuracy"]})
        rows.append({"model": f"{rung} {model.name} (book)", "source": "book", "accuracy": model.book_accuracy})
    return rows


def data_description(archive):
    if archive == "data/sample/train.zip":
        return "the synthetic sample (`data/sample/train.zip`, drawn shapes, not photos)"
    return f"`{archive}`"


def main():
    params = load_params()
    factor = params["curves"]["smoothing"]
    results = {model.name: read_json(EVAL_DIR / model.name / "metrics.json", f"evaluate@{model.name}")
               for model in MODELS}
    training = {model.name: read_json(f"dvclive/{model.stage}/metrics.json", model.stage) for model in MODELS}
    keys = ("loss", "accuracy", "precision", "recall", "roc_auc", "confusion")
    write_json(METRICS, {name: {key: result[key] for key in keys} for name, result in results.items()})
    test_images = sum(results[MODELS[0].name]["confusion"].values())
    with atomic_file(SUMMARY) as tmp:
        tmp.write_text(f"# Test accuracy, model by model ({test_images} test images)\n\n"
                       f"Data: {data_description(params['data']['archive'])}.\n\n"
                       + summary_table(results, training))
    write_json(LADDER, {"ladder": ladder_rows(results)})
    for model in MODELS:
        write_json(CURVES_DIR / f"{model.stage}.json", {"curves": stage_curves(model.stage, factor)})
    for model in MODELS:
        print(f"{model.name}: test accuracy {results[model.name]['accuracy']:.1%} (book {model.book_accuracy:.0%})")


if __name__ == "__main__":
    run(main)
