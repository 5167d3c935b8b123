"""The submission path: what test-time augmentation buys, and time and memory per image.

    python -m bench.submission --model models/finetuned.keras --split-dir data/split/test [--tta 1 2 12]
    python -m bench.submission --model models/finetuned.keras --synthetic 12500

--split-dir (a folder with cats/ and dogs/, such as the test split of the real photos)
is packed into a test1.zip in Kaggle's layout, ids in a seeded shuffle, and run through
the `submission` stage's code once per --tta value, side by side, with the clip at
Keras' 1e-7; the CSV is then scored against the known labels at each --clip (clipping
afterwards gives what the stage writes with that clip): log loss as Kaggle computes it
and accuracy at 0.5.

--synthetic N draws N pictures into a test1.zip with the `sample` stage's code and
writes the submission in a child process: rows, seconds per 1,000 images and the
child's peak RSS.
"""

import argparse
import csv
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from bench.machine import cpu_description

REPO = Path(__file__).resolve().parent.parent


def pack_split(split_dir, archive, seed=0):
    """test1/<id>.jpg from cats/ and dogs/ in a seeded order; return {id: label}."""
    files = [(path, label) for label, folder in enumerate(("cats", "dogs"))
             for path in sorted((Path(split_dir) / folder).glob("*.jpg"))]
    random.Random(seed).shuffle(files)
    labels = {}
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as out:
        for image_id, (path, label) in enumerate(files, start=1):
            out.write(path, f"test1/{image_id}.jpg")
            labels[image_id] = label
    return labels


def score(csv_path, labels, clip):
    rows = list(csv.DictReader(open(csv_path)))
    assert [int(row["id"]) for row in rows] == sorted(labels), "ids missing or out of order"
    loss = accuracy = 0.0
    for row in rows:
        p, y = min(max(float(row["label"]), clip), 1 - clip), labels[int(row["id"])]
        loss -= math.log(p) if y else math.log(1 - p)
        accuracy += (p > 0.5) == bool(y)
    return loss / len(rows), accuracy / len(rows)


def timed_submission(archive, model, out, tta, batch_size, clip=0.005):
    """Run write_submission in a child process: (seconds, peak RSS in MiB)."""
    code = ("import sys; from dogs_vs_cats.submission import write_submission; "
            f"rows, skipped = write_submission({str(archive)!r}, {str(model)!r}, {str(out)!r}, clip={clip}, "
            f"tta={tta}, batch_size={batch_size}); print(rows, len(skipped))")
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.DEVNULL)
    # wait4 reports this child's own resource use (RUSAGE_CHILDREN would be the largest of
    # every child this process has waited for so far).
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, child.args)
    return seconds, usage.ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--split-dir")
    parser.add_argument("--synthetic", type=int)
    parser.add_argument("--tta", type=int, nargs="+", default=[1, 2, 12])
    parser.add_argument("--clip", type=float, nargs="+", default=[1e-7, 0.005, 0.01, 0.025, 0.05])
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    results = {"cpu": cpu_description(), "model": args.model}
    print(results["cpu"])
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "test1.zip"
        if args.split_dir:
            labels = pack_split(args.split_dir, archive)
            results["images"] = len(labels)
            for tta in args.tta:
                out = Path(tmp) / f"submission_tta{tta}.csv"
                seconds, rss = timed_submission(archive, args.model, out, tta, args.batch_size, clip=1e-7)
                results[f"tta{tta}"] = {"seconds": round(seconds, 1)}
                for clip in args.clip:
                    loss, accuracy = score(out, labels, clip)
                    results[f"tta{tta}"][f"clip {clip:g}"] = {"log_loss": round(loss, 4),
                                                               "accuracy": round(accuracy, 4)}
                    print(f"tta {tta:2d}, clip {clip:g}: log loss {loss:.4f}, accuracy {accuracy:.2%} "
                          f"({seconds:.0f} s)")
        if args.synthetic:
            from dogs_vs_cats.sample import write_test_sample
            start = time.perf_counter()
            write_test_sample(archive, args.synthetic, seed=42)
            drawn = time.perf_counter() - start
            out = Path(tmp) / "submission.csv"
            seconds, rss = timed_submission(archive, args.model, out, 1, args.batch_size)
            rows = sum(1 for _ in open(out)) - 1
            results["synthetic"] = {"images": args.synthetic, "rows": rows, "seconds": round(seconds, 1),
                                    "seconds_per_1000": round(1000 * seconds / args.synthetic, 1),
                                    "peak_rss_mib": round(rss), "drawing_s": round(drawn, 1)}
            print(f"synthetic: {rows} rows from {args.synthetic} images in {seconds:.0f} s "
                  f"({1000 * seconds / args.synthetic:.1f} s per 1,000), peak RSS {rss:.0f} MiB")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
