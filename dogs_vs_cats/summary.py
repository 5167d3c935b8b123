"""The chapter's ladder in one place, from every model's evaluation and training log:
the test metrics of all models, the model-by-model table against the book, the ladder's
bars for `dvc plots`, and Listing 5.24's smoothed curves."""

import csv
import json
from pathlib import Path

from dogs_vs_cats.catalog import BOOK_LEVERS, MODELS, SAMPLE_ARCHIVE
from dogs_vs_cats.errors import StageError
from dogs_vs_cats.outputs import atomic_file, write_json

SERIES = {"accuracy": "train/accuracy", "val_accuracy": "eval/accuracy", "loss": "train/loss", "val_loss": "eval/loss"}


def read_json(path, stage):
    path = Path(path)
    if not path.is_file():
        raise StageError(f"{path} not found: run `dvc repro {stage}` first")
    return json.loads(path.read_text())


def read_yaml(path, stage):
    from ruamel.yaml import YAML
    path = Path(path)
    if not path.is_file():
        raise StageError(f"{path} not found: run `dvc repro {stage}` first")
    return YAML(typ="safe", pure=True).load(path.read_text()) or {}


def smooth(points, factor=0.8):
    """Listing 5.24: each point becomes previous * factor + point * (1 - factor)."""
    smoothed = []
    for point in points:
        smoothed.append(smoothed[-1] * factor + point * (1 - factor) if smoothed else point)
    return smoothed


def read_series(logs, stage, name):
    path = Path(logs) / stage / "plots/metrics" / f"{name}.tsv"
    if not path.is_file():
        raise StageError(f"{path} not found: run `dvc repro {stage}` first")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [int(row["step"]) for row in rows], [float(row[Path(name).name]) for row in rows]


def stage_curves(logs, stage, factor):
    """Listing 5.24's curves of the training stage whose DVCLive log is `logs`/<stage>."""
    columns = {}
    for column, name in SERIES.items():
        steps, values = read_series(logs, stage, name)
        columns[column] = values
        columns[f"smoothed_{column}"] = smooth(values, factor)
    return [{"step": step, **{key: round(values[i], 6) for key, values in columns.items()}}
            for i, step in enumerate(steps)]


def epochs_text(training, book_epochs):
    epochs = training.get("epochs_run", training.get("step", -1) + 1)
    best = training.get("best_epoch")
    return f"{epochs} of {book_epochs}" + (f" (best {best})" if best else "")


def settings_text(model, stage_params, log):
    """The params of `model`'s stage that differ from the book's, as `key value` (`stage_params`:
    its DVCLive params.yaml), with the precision it ran in when that is not float32. `epochs`
    is the planned number; early stopping's epochs run are in the table's epochs column."""
    changed = []
    for key, book in {"epochs": model.book_epochs, **model.book_settings, **BOOK_LEVERS}.items():
        value = stage_params.get(key, book)
        ran = log.get(key) if key == "precision" else None  # `auto` resolves machine by machine
        if (ran or value) != book:
            changed.append(f"{key} {ran} ({value})" if ran and ran != value else f"{key} {value}")
    return ", ".join(f"`{text}`" for text in changed) or "the book's"


def summary_table(results, training, settings):
    lines = ["| model | what | epochs run of the book's (best) | test accuracy | book | parameters (trainable) "
             "| training time | settings other than the book's |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for model in MODELS:
        result, log = results[model.name], training[model.name]
        seconds = log.get("train_time_s")
        time_text = f"{seconds / 60:.1f} min" if seconds is not None else "-"
        lines.append(f"| `{model.name}` | {model.what} | {epochs_text(log, model.book_epochs)} | "
                     f"{result['accuracy']:.1%} | {model.book_accuracy:.0%} | "
                     f"{result['parameters']:,} ({result['trainable_parameters']:,}) | {time_text} | "
                     f"{settings[model.name]} |")
    return "\n".join(lines) + "\n"


def ladder_rows(results):
    """Two bars per model, this run's test accuracy and the book's, in the ladder's order."""
    rows = []
    for rung, model in enumerate(MODELS, start=1):
        rows.append(
            {"model": f"{rung} {model.name}", "source": "this run", "accuracy": results[model.name]["accuracy"]}
        )
        rows.append({"model": f"{rung} {model.name} (book)", "source": "book", "accuracy": model.book_accuracy})
    return rows


def data_description(archive):
    if archive == SAMPLE_ARCHIVE:
        return f"the synthetic sample (`{SAMPLE_ARCHIVE}`, drawn shapes, not photos)"
    return f"`{archive}`"


def write_summary(evaluations, logs, archive, smoothing, *, metrics, summary, ladder, curves):
    """Gather every model's evaluation (`evaluations`/<model>/metrics.json) and training log
    (`logs`/<stage>/) into `metrics` (evaluate.json), `summary` (summary.md), `ladder`
    (ladder.json) and the folder `curves`; return {model: test accuracy}."""
    evaluations, logs = Path(evaluations), Path(logs)
    results = {
        model.name: read_json(evaluations / model.name / "metrics.json", f"evaluate@{model.name}") for model in MODELS
    }
    # The training log's summary, with its wall times (timing.json, kept out of the metrics).
    training = {model.name: {**read_json(logs / model.stage / "metrics.json", model.stage),
                             **read_json(logs / model.stage / "timing.json", model.stage)} for model in MODELS}
    settings = {model.name: settings_text(model, read_yaml(logs / model.stage / "params.yaml", model.stage),
                                          training[model.name]) for model in MODELS}
    keys = ("loss", "accuracy", "precision", "recall", "roc_auc", "confusion")
    write_json(metrics, {name: {key: result[key] for key in keys} for name, result in results.items()})
    test_images = sum(results[MODELS[0].name]["confusion"].values())
    with atomic_file(summary) as tmp:
        tmp.write_text(f"# Test accuracy, model by model ({test_images} test images)\n\n"
                       f"Data: {data_description(archive)}.\n\n" + summary_table(results, training, settings))
    write_json(ladder, {"ladder": ladder_rows(results)})
    for model in MODELS:
        write_json(Path(curves) / f"{model.stage}.json", {"curves": stage_curves(logs, model.stage, smoothing)})
    return {name: result["accuracy"] for name, result in results.items()}
