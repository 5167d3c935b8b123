"""Feature extraction speed: the book's Keras 2 code against the `features` stage, side by side.

    python -m bench.features [--images 500] [--rounds 3] [--data ARCHIVE] [--size 150]
                             [--weights none|PATH] [--precisions float32 bfloat16] [--batch-size 32]

Both paths read the same JPEG files (the first --images/2 cats and dogs of the archive,
written out by the `split` stage's code) on the same machine, taking turns for
--rounds rounds so that a busy spell on a shared machine hits them alike; each path's
best round is reported. The time runs from the first image read to the last feature
written, model building excluded:

  book     Listing 5.17: tf_keras' ImageDataGenerator(rescale=1/255).flow_from_directory(...,
           batch_size=20) and conv_base.predict per batch (needs the bench extras: `make bench`)
  project  dogs_vs_cats.features.extract with the stage's model, once per --precisions value

Each path runs in a child process of its own, so the peak RSS printed is that path's.
Also printed: this machine's matmul throughput in float32 and bfloat16 and the GFLOP/s
each path achieves on VGG16's convolutions, to show the distance to the hardware limit.
Default input: ../shared/data/dogs-vs-cats-128px/train.zip when present, else the
`sample` stage's archive (made on the spot when missing).
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REAL_PHOTOS = REPO.parent / "shared/data/dogs-vs-cats-128px/train.zip"
SAMPLE = REPO / "data/sample/train.zip"
BOOK_BATCH = 20
VGG16_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))  # (conv layers, filters)


def vgg16_conv_flops(size):
    """Floating-point operations (2 per multiply-add) of VGG16's 13 convolutions on one image."""
    flops, side, channels = 0, size, 3
    for layers, filters in VGG16_BLOCKS:
        for _ in range(layers):
            flops += 2 * side * side * 3 * 3 * channels * filters  # 3x3 kernels, `same` padding
            channels = filters
        side //= 2
    return flops


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def child_matmul(args):
    """Best GFLOP/s of n x n matmuls over a few sizes and three timed rounds, float32 and bfloat16."""
    import tensorflow as tf
    result = {}
    for dtype in (tf.float32, tf.bfloat16):
        best = 0.0
        for n in (2048, 3072, 4096):
            a = tf.cast(tf.random.normal((n, n)), dtype)
            b = tf.cast(tf.random.normal((n, n)), dtype)
            matmul = tf.function(tf.linalg.matmul)
            matmul(a, b).numpy()
            repeats = max(2, int(2e10 // (2 * n ** 3)))
            for _ in range(3):
                started = time.perf_counter()
                for _ in range(repeats):
                    c = matmul(a, b)
                c.numpy()
                best = max(best, 2 * n ** 3 * repeats / (time.perf_counter() - started) / 1e9)
        result[dtype.name] = best
    return result


def child_book(args):
    """Listing 5.17, as printed, on tf_keras (Keras 2)."""
    import numpy as np
    try:
        import tf_keras
    except ImportError:
        sys.exit("error: the book's path needs tf_keras (Keras 2): "
                 "run `make bench`, which installs requirements/bench.lock")
    conv_base = tf_keras.applications.VGG16(weights=None, include_top=False, input_shape=(args.size, args.size, 3))
    if args.weights != "none":
        from dogs_vs_cats.nets import conv_base as keras3_conv_base
        conv_base.set_weights(keras3_conv_base(args.weights, args.size).get_weights())
    datagen = tf_keras.preprocessing.image.ImageDataGenerator(rescale=1.0 / 255)
    started = time.perf_counter()
    generator = datagen.flow_from_directory(args.folder, target_size=(args.size, args.size), batch_size=BOOK_BATCH,
                                            class_mode="binary")
    sample_count = generator.samples
    features = np.zeros((sample_count, *conv_base.output_shape[1:]))
    labels = np.zeros(sample_count)
    i = 0
    for inputs_batch, labels_batch in generator:
        features_batch = conv_base.predict(inputs_batch, verbose=0)
        features[i * BOOK_BATCH: (i + 1) * BOOK_BATCH] = features_batch
        labels[i * BOOK_BATCH: (i + 1) * BOOK_BATCH] = labels_batch
        i += 1
        if i * BOOK_BATCH >= sample_count:
            break
    return {"seconds": time.perf_counter() - started, "images": sample_count}


def child_project(args):
    """The `features` stage's own code: its model, its tf.data input, its streaming writer."""
    from dogs_vs_cats.features import build_extractor, extract
    from dogs_vs_cats.images import list_images
    model = build_extractor(args.weights, args.size, "vgg16", args.precision)
    paths, _ = list_images("train", root=args.folder.parent)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        extract(model, paths, args.size, args.batch_size, Path(tmp) / "train_features.npy")
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "images": len(paths)}


def in_child(what, args, **extra):
    """Run one measurement in a fresh Python process; return its JSON result."""
    command = [sys.executable, "-m", "bench.features", "--child", what, "--size", str(args.size),
               "--weights", args.weights, "--batch-size", str(args.batch_size), "--folder", str(args.folder)]
    for key, value in extra.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    print(f"  {what} {' '.join(str(v) for v in extra.values())}".rstrip(), flush=True)
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{done.stderr[-3000:]}\nerror: the {what} measurement failed (exit status {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def best_of(results):
    """The fastest round, with the highest peak RSS of all rounds."""
    best = min(results, key=lambda r: r["seconds"])
    return {**best, "peak_rss_mb": max(r["peak_rss_mb"] for r in results), "rounds_s": [r["seconds"] for r in results]}


def prepare_images(archive, count, folder):
    """The first count/2 cats and dogs of `archive`, in flow_from_directory's layout."""
    from dogs_vs_cats.split import make_split
    if archive == SAMPLE and not archive.is_file():
        from dogs_vs_cats.sample import write_sample
        print(f"making the sample archive {archive}")
        write_sample(archive, max(count // 2, 2000), 42)
    make_split(archive, {"train": count // 2, "validation": 0, "test": 0}, output=folder.parent,
               report=folder.parent.parent / "split.json")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=500, help="images to extract (half cats, half dogs)")
    parser.add_argument("--rounds", type=int, default=3, help="turns each path takes; its best is reported")
    parser.add_argument("--data", type=Path, help="Kaggle train.zip-style archive (default: the real photos "
                                                  "in ../shared when present, else the sample)")
    parser.add_argument("--size", type=int, default=150, help="image.size")
    parser.add_argument("--weights", default="none", help="none, or a VGG16 notop weights file (speed does "
                                                          "not depend on the weights)")
    parser.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"], help="features.precision values")
    parser.add_argument("--batch-size", type=int, default=32, help="features.batch_size of the project's path")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--precision", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        result = {"matmul": child_matmul, "book": child_book, "project": child_project}[args.child](args)
        print(json.dumps({**result, "peak_rss_mb": peak_rss_mb()}))
        return

    archive = args.data or (REAL_PHOTOS if REAL_PHOTOS.is_file() else SAMPLE)
    with tempfile.TemporaryDirectory() as tmp:
        args.folder = Path(tmp) / "split" / "train"
        prepare_images(archive.resolve(), args.images, args.folder)
        print("measuring:")
        matmul = in_child("matmul", args)
        rounds = {"book": []} | {f"project {p}": [] for p in args.precisions}
        for _ in range(args.rounds):
            rounds["book"].append(in_child("book", args))
            for precision in args.precisions:
                rounds[f"project {precision}"].append(in_child("project", args, precision=precision))
        runs = {name: best_of(results) for name, results in rounds.items()}

    flops = vgg16_conv_flops(args.size)
    peak = {"book": matmul["float32"], **{f"project {p}": matmul["bfloat16" if "bfloat16" in p else "float32"]
                                          for p in args.precisions}}
    print(f"\n{runs['book']['images']} images of {archive}, {args.size} px, weights {args.weights}, "
          f"best of {args.rounds} rounds; "
          f"VGG16 convolutions: {flops / 1e9:.2f} GFLOP per image")
    print(f"matmul throughput: float32 {matmul['float32']:.0f} GFLOP/s, bfloat16 {matmul['bfloat16']:.0f} GFLOP/s\n")
    print(f"{'path':<20} {'images/s':>9} {'x book':>7} {'GFLOP/s':>8} {'of matmul':>10} {'peak RSS':>9}")
    book_rate = runs["book"]["images"] / runs["book"]["seconds"]
    for name, result in runs.items():
        rate = result["images"] / result["seconds"]
        result.update(images_per_s=rate, ratio_to_book=rate / book_rate, gflops=rate * flops / 1e9)
        print(f"{name:<20} {rate:9.1f} {rate / book_rate:6.2f}x {result['gflops']:8.0f} "
              f"{result['gflops'] / peak[name]:9.0%} {result['peak_rss_mb']:7.0f} MB")
    if args.json:
        args.json.write_text(json.dumps({"archive": str(archive), "size": args.size,
                                         "conv_gflop_per_image": flops / 1e9, "matmul_gflops": matmul, "runs": runs},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
