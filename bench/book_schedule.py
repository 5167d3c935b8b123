"""The book's schedule on a CPU: today's plain path against the book-schedule levers, stage by stage.

    python -m bench.book_schedule --weights PATH [--data ARCHIVE] [--workdir /tmp/dogs-vs-cats-book]

In one throwaway workspace (the book's split of --data, the real photos in ../shared when
present), every stage runs under two settings, one after the other:

- plain: float32, no caches, no echo, no early stopping, fine-tuning from train_head's
  head: what the pipeline did before the levers existed;
- levers: the settings of `make book FAST=1` (conf/levers/fast.yaml).

Each training stage runs a few epochs (2 plain; echo + 1 with the levers, so a whole echo
cycle is in the mean), and its dvclive/<stage>/timing.json gives the first epoch's wall
time and the mean of the others. The projection to the book's epochs is: the stage's wall time outside
its epochs, plus the first epoch, plus the mean epoch times the rest of the book's epochs. A
stage with a pool of `views` runs one fresh pass and one epoch drawn from the pool (views 1):
its projection counts `views` first epochs and the rest at the drawn epoch's time.
Early stopping is left out of the projection: only a real run says when it stops. With
--epochs-from (a real run's dvclive/ folder) the projection takes the epochs each stage ran
there instead, e.g. the time the recipe's own run would take on another CPU:

    ONEDNN_MAX_CPU_ISA=AVX2 python -m bench.book_schedule --weights PATH --only levers \
        --epochs-from path/to/run/dvclive
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from ruamel.yaml import YAML

from bench.machine import cpu_description
from dogs_vs_cats.catalog import MODELS
from dogs_vs_cats.workspace import bench_workspace, compose, dvc, environment, REPO, stage_command, update_params

REAL_PHOTOS = REPO.parent / "shared/data/dogs-vs-cats-128px/train.zip"
# Stage, the book's epochs (None: not a training stage), in the order they can run.
STAGES = [("weights", None), ("features", None)] + [(model.stage, model.book_epochs) for model in MODELS]
TRAINING = [stage for stage, epochs in STAGES if epochs]
PLAIN = {"features": {"precision": "float32"},
         **{stage: {"precision": "float32", "early_stopping": 0} for stage in TRAINING},
         "scratch": {"precision": "float32", "early_stopping": 0, "cache": False},
         "scratch_augmented": {"precision": "float32", "early_stopping": 0, "cache": False},
         "features_augmented": {"precision": "float32", "early_stopping": 0, "cache": False, "echo": 1},
         "finetune": {"precision": "float32", "early_stopping": 0, "cache": False, "echo": 1, "start_from": "head"}}


def fast_levers():
    """conf/levers/fast.yaml, what `make book FAST=1` composes, as params.yaml sections."""
    levers = YAML(typ="safe", pure=True).load((REPO / "conf/levers/fast.yaml").read_text())
    levers.pop("configuration")
    return levers


def book_params(path, base):
    """The book's schedule without levers (`make book`'s params.yaml) plus `base`, in `path`."""
    compose(path, ["schedule=book", "levers=none"])
    update_params(path, base)


def run_stage(workspace, stage):
    started = time.perf_counter()
    command = stage_command(stage, workspace / "params.yaml")
    result = subprocess.run([sys.executable, *command[1:]], cwd=workspace, env=environment(),
                            capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{stage} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def epochs_run(dvclive):
    """The epochs each training stage ran in a real run, from its DVCLive summary."""
    return {stage: json.loads((dvclive / stage / "metrics.json").read_text())["epochs_run"] for stage in TRAINING}


def projection(wall, first, mean, epochs, planned, views=0):
    """A stage's seconds over `planned` epochs, from a run of `epochs` that took `wall` seconds
    (`first` the first epoch, `mean` each other): the time outside its epochs, the first
    epoch, and the rest at the mean; with a pool of `views`, its fresh passes at the first
    epoch's time and the rest at the mean (an epoch drawn from the pool)."""
    outside = wall - first - mean * (epochs - 1)
    fresh = min(views, planned) if views else 1
    return outside + first * fresh + mean * (planned - fresh)


def measure(workspace, base, settings, projected_epochs):
    """Run every stage under the book's params plus `base` and `settings`; return per stage
    its wall time, epoch times and the projection to `projected_epochs` (stage -> epochs)."""
    results = {}
    for stage, book_epochs in STAGES:
        book_params(workspace / "params.yaml", base)
        overrides = {section: dict(values) for section, values in settings.items()}
        views = overrides.get(stage, {}).get("views", 0)
        if book_epochs:
            echo = overrides.get(stage, {}).get("echo", 1)
            overrides.setdefault(stage, {})["epochs"] = max(2, echo + 1)
            if views:  # one fresh pass, then one epoch drawn from the pool: what each of the two kinds costs
                overrides[stage]["views"] = 1
            if stage == "finetune":
                overrides[stage]["frozen_epochs"] = 0
        update_params(workspace / "params.yaml", overrides)
        wall = run_stage(workspace, stage)
        result = {"wall_s": wall}
        if book_epochs:
            summary = json.loads((workspace / f"dvclive/{stage}/timing.json").read_text())
            epochs = overrides[stage]["epochs"]
            first, mean = summary["first_epoch_s"], summary["epoch_s"]
            result.update(epochs=epochs, first_epoch_s=first, epoch_s=mean,
                          book_s=projection(wall, first, mean, epochs, projected_epochs[stage], views))
        else:
            result["book_s"] = wall
        results[stage] = result
        print(f"  {stage}: {json.dumps({k: round(v, 1) for k, v in result.items()})}", flush=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", required=True, help="VGG16 notop weights file")
    parser.add_argument("--data", type=Path, default=REAL_PHOTOS if REAL_PHOTOS.is_file() else None)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dogs-vs-cats-book"))
    parser.add_argument("--only", choices=("plain", "levers"), help="measure one setting, not both")
    parser.add_argument("--epochs-from", type=Path, metavar="DVCLIVE",
                        help="project to the epochs each stage ran in this dvclive/ folder, not the book's")
    args = parser.parse_args()
    if args.data is None:
        sys.exit("error: no archive: pass --data path/to/train.zip (real photos)")
    workspace = args.workdir
    base = {"data": {"archive": str(args.data.resolve())}, "base": {"weights": str(Path(args.weights).resolve())}}
    bench_workspace(workspace, base)
    book_params(workspace / "params.yaml", base)
    dvc(workspace, "repro", "split")
    print(f"CPU: {cpu_description()}", flush=True)
    levers = fast_levers()
    print(f"levers: {levers}", flush=True)
    projected = epochs_run(args.epochs_from) if args.epochs_from else dict(STAGES)
    print(f"projected to epochs: {json.dumps({s: projected[s] for s in TRAINING})}", flush=True)
    settings = {"plain": PLAIN, "levers": levers}
    results = {}
    for name in [args.only] if args.only else settings:
        print(f"{name}:", flush=True)
        results[name] = measure(workspace, base, settings[name], projected)
    if args.only:
        rows = results[args.only]
        print(f"\n| stage | s/epoch | {args.only}, projected |\n|---|---:|---:|")
        for stage, _ in STAGES:
            print(f"| {stage} | {rows[stage].get('epoch_s', 0):.1f} | {rows[stage]['book_s'] / 60:.1f} min |")
        print(f"| all of the above | | {sum(r['book_s'] for r in rows.values()) / 60:.1f} min |")
        return

    print("\n| stage | plain s/epoch | levers s/epoch | ratio | plain, book's epochs | levers, book's epochs | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for stage, _ in STAGES:
        plain, fast = results["plain"][stage], results["levers"][stage]
        per_epoch = (f"{plain['epoch_s']:.1f} | {fast['epoch_s']:.1f} | {plain['epoch_s'] / fast['epoch_s']:.2f}x"
                     if "epoch_s" in plain else "- | - | -")
        print(f"| {stage} | {per_epoch} | {plain['book_s'] / 60:.1f} min | {fast['book_s'] / 60:.1f} min | "
              f"{plain['book_s'] / fast['book_s']:.2f}x |")
    total_plain = sum(r["book_s"] for r in results["plain"].values())
    total_fast = sum(r["book_s"] for r in results["levers"].values())
    print(f"| all of the above | | | | {total_plain / 3600:.2f} h | {total_fast / 3600:.2f} h | "
          f"{total_plain / total_fast:.2f}x |")


if __name__ == "__main__":
    main()
