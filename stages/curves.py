"""Stage `curves`: Listing 5.24's smoothed training curves, from every training stage's DVCLive log.

Writes metrics/curves/<stage>.json: per epoch, training and validation accuracy and loss,
raw and smoothed by an exponential moving average (`curves.smoothing`, the book's 0.8).
"""

import csv
from pathlib import Path

from stages.common import load_params, run, StageError, write_json

OUTPUT_DIR = Path("metrics/curves")
TRAINING_STAGES = ("scratch", "scratch_augmented", "train_head", "features_augmented", "finetune")
SERIES = {"accuracy": "train/accuracy", "val_accuracy": "eval/accuracy", "loss": "train/loss", "val_loss": "eval/loss"}


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


def main():
    factor = load_params()["curves"]["smoothing"]
    if not 0 <= factor < 1:
        raise StageError(f"params.yaml: curves.smoothing is {factor!r}; it must be in [0, 1)")
    for stage in TRAINING_STAGES:
        write_json(OUTPUT_DIR / f"{stage}.json", {"curves": stage_curves(stage, factor)})
    print(f"wrote {OUTPUT_DIR}/: smoothed curves of {', '.join(TRAINING_STAGES)}")


if __name__ == "__main__":
    run(main)
