"""What features.precision costs in accuracy: the head trained on float32 and on bfloat16 features.

    python -m bench.precision --weights PATH [--data ARCHIVE] [--precisions float32 bfloat16]
                              [--workdir /tmp/dogs-vs-cats-precision]

Runs the real stages (`dvc repro features`, `dvc repro train_head`, once per precision)
in a throwaway workspace with the book's params, on the real photos in ../shared when
present, and prints for each precision: the `features` stage's time, the head's test
accuracy and loss, how far the test features are from float32's, and how the float32
head does on them.
"""

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from dogs_vs_cats.workspace import bench_workspace, dvc, REPO, update_params

REAL_PHOTOS = REPO.parent / "shared/data/dogs-vs-cats-128px/train.zip"


def head_on_test(workspace, head_path, features_path):
    import keras
    head = keras.models.load_model(head_path)
    features = np.load(features_path)
    labels = np.load(workspace / "data/features/test_labels.npy")
    head.compile(loss="binary_crossentropy", metrics=["accuracy"])
    loss, accuracy = head.evaluate(features, labels, batch_size=100, verbose=0)
    return accuracy, loss


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", required=True, help="VGG16 notop weights file (or imagenet)")
    parser.add_argument("--data", type=Path, default=REAL_PHOTOS if REAL_PHOTOS.is_file() else None)
    parser.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dogs-vs-cats-precision"))
    args = parser.parse_args()
    if args.data is None:
        sys.exit("error: no archive: pass --data path/to/train.zip (real photos; the sample says little here)")
    weights = args.weights if args.weights == "imagenet" else str(Path(args.weights).resolve())
    workspace = args.workdir
    bench_workspace(workspace, {"data": {"archive": str(args.data.resolve())}, "base": {"weights": weights}})
    dvc(workspace, "repro", "split")

    results, reference = {}, None
    for precision in args.precisions:
        started = time.perf_counter()
        update_params(workspace / "params.yaml", {"features": {"precision": precision}})
        dvc(workspace, "repro", "features")
        features_s = time.perf_counter() - started
        dvc(workspace, "repro", "train_head")
        kept = workspace / f"head-{precision}.keras"
        shutil.copy(workspace / "models/head.keras", kept)
        test_features = workspace / f"test-{precision}.npy"
        shutil.copy(workspace / "data/features/test_features.npy", test_features)
        accuracy, loss = head_on_test(workspace, kept, test_features)
        results[precision] = {"features_s": features_s, "accuracy": accuracy, "loss": loss, "features": test_features}
        reference = reference or precision
        print(f"{precision}: features stage {features_s:.0f} s, head test accuracy {accuracy:.4f}, loss {loss:.4f}",
              flush=True)

    base = np.load(results[reference]["features"])
    for precision, result in results.items():
        features = np.load(result["features"])
        distance = np.linalg.norm(features - base) / np.linalg.norm(base)
        crossed, _ = head_on_test(workspace, workspace / f"head-{reference}.keras", result["features"])
        change = (result["accuracy"] - results[reference]["accuracy"]) * 100
        print(f"{precision:>10}: test accuracy {result['accuracy']:.2%} ({change:+.2f} pt), "
              f"features {distance:.2%} from {reference}'s (relative L2), "
              f"{reference} head on them {crossed:.2%}, features stage {result['features_s']:.0f} s")


if __name__ == "__main__":
    main()
