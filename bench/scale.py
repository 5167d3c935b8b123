"""DVC and memory at Kaggle scale: a generated 25,000-image archive through the pipeline.

    python -m bench.scale [--images 25000] [--workdir /tmp/dogs-vs-cats-scale] [--size 150]
                          [--precision float32] [--skip-features]

1. A throwaway git + DVC workspace of this project makes a Kaggle-sized archive with the
   `sample` stage (--images pictures, 200-450 px, about 550 MB for 25,000, as Kaggle's).
2. Book split (1000/500/500 per class), tiny models (48 px, one epoch): the whole pipeline
   runs once, then `dvc repro` is timed with nothing to do, and again after a change to
   train_head.lr, which must re-run train_head and what depends on it only. The archive is
   then changed in place, same size and mtime: had DVC re-read it, `sample` would re-run.
3. Every image in the split (--images in all) at --size px and --precision: peak RSS of the
   `features` stage over all of them (sampled every second, and the kernel's peak), then a
   no-op `dvc repro features` with a --images-file data/split.
"""

import argparse
import os
import re
import threading
import time
from pathlib import Path

from dogs_vs_cats.workspace import (
    bench_workspace,
    dvc,
    stages_run,
    tamper_keeping_size_and_mtime,
    TINY_PARAMS,
    update_params,
)


def timed(workspace, label, *args):
    started = time.perf_counter()
    result = dvc(workspace, *args)
    seconds = time.perf_counter() - started
    ran = sorted(stages_run(result.stdout))
    print(f"{label}: {seconds:.2f} s, ran {', '.join(ran) or 'nothing'}", flush=True)
    return seconds, ran


def features_memory_mib():
    """(RSS, peak RSS) of the running `python -m stages.features` process, from /proc; None if none runs."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"stages.features" in Path(f"/proc/{pid}/cmdline").read_bytes():
                status = Path(f"/proc/{pid}/status").read_text()
                return tuple(int(re.search(rf"{key}:\s+(\d+)", status).group(1)) / 1024 for key in ("VmRSS", "VmHWM"))
        except (OSError, AttributeError):
            continue
    return None


def sample_memory(samples, stop):
    started = time.perf_counter()
    while not stop.wait(1.0):
        memory = features_memory_mib()
        if memory:
            samples.append((time.perf_counter() - started, *memory))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=25_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dogs-vs-cats-scale"))
    parser.add_argument("--size", type=int, default=150, help="image.size of the memory measurement")
    parser.add_argument("--precision", default="float32", help="features.precision of the memory measurement")
    parser.add_argument("--skip-features", action="store_true", help="stop after the no-op measurements")
    args = parser.parse_args()
    per_class = args.images // 2
    workspace = args.workdir
    bench_workspace(workspace, {**TINY_PARAMS, "sample": {"per_class": per_class, "max_side": 450},
                                "split": {"train": 1000, "validation": 500, "test": 500}})
    print(f"workspace {workspace}")

    timed(workspace, "sample (make the archive)", "repro", "sample")
    archive = workspace / "data/sample/train.zip"
    print(f"archive: {args.images} images, {archive.stat().st_size / 1e6:.0f} MB")
    timed(workspace, "whole pipeline, book split, 48 px, 1 epoch", "repro")
    noop = [timed(workspace, "no-op dvc repro", "repro")[0] for _ in range(3)]
    undo = tamper_keeping_size_and_mtime(archive)
    update_params(workspace / "params.yaml", {"train_head": {"lr": 1.0e-4}})
    check_started = time.perf_counter()
    dvc(workspace, "status")
    status_s = time.perf_counter() - check_started
    _, ran = timed(workspace, "after train_head.lr changed, archive changed in place (same size, mtime)", "repro")
    undo()
    print(f"dvc status with train_head.lr changed: {status_s:.2f} s")
    assert "sample" not in ran and "split" not in ran and "features" not in ran, ran
    print(f"no-op dvc repro: best {min(noop):.2f} s, worst {max(noop):.2f} s; archive not re-read, features not re-run")
    if args.skip_features:
        return

    update_params(workspace / "params.yaml", {"split": {"train": per_class - 2 * (per_class // 10),
                                                        "validation": per_class // 10, "test": per_class // 10},
                                              "image": {"size": args.size},
                                              "features": {"precision": args.precision, "batch_size": 32}})
    timed(workspace, "split, every image", "repro", "split")
    samples, stop = [], threading.Event()
    sampler = threading.Thread(target=sample_memory, args=(samples, stop), daemon=True)
    sampler.start()
    label = f"features over {args.images} images at {args.size} px, {args.precision}"
    seconds, _ = timed(workspace, label, "repro", "features")
    stop.set()
    sampler.join()
    print(f"features: {args.images / seconds:.1f} images/s")
    for fraction in (0.1, 0.25, 0.5, 0.75, 1.0):
        at, rss, _ = samples[min(len(samples) - 1, int(fraction * len(samples)))]
        print(f"  RSS of the features process at {at:5.0f} s: {rss:.0f} MiB")
    print(f"  peak RSS (the kernel's VmHWM, last sample): {samples[-1][2]:.0f} MiB")
    label = f"no-op dvc repro features ({args.images} files in data/split)"
    noop = [timed(workspace, label, "repro", "features")[0] for _ in range(3)]
    print(f"no-op dvc repro features: best {min(noop):.2f} s, worst {max(noop):.2f} s")


if __name__ == "__main__":
    main()
