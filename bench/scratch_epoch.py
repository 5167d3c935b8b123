"""Where an epoch of `scratch_augmented` goes: augmentation against the convnet's training step.

    python -m bench.scratch_epoch [--batches 20] [--size 150] [--batch-size 32]

Times, on random pixels of the book's shape, per batch of `--batch-size` images:
- the augmentation training runs (dogs_vs_cats.augment.RandomAffine, one resampling);
- the stack of Keras layers it replaced (RandomFlip, RandomRotation, RandomTranslation,
  RandomShear, RandomZoom: one resampling each);
- one training step of the small convnet (Listing 5.13), in float32 and in `precision: auto`
  (bfloat16 where the CPU computes it natively, float32 elsewhere);
- for scale, VGG16's conv base on the same batch, forward only (the frozen part that
  `features`, `features_augmented` and `finetune` run), in both precisions;
each in a child process with oneDNN at full strength and capped at AVX2
(ONEDNN_MAX_CPU_ISA=AVX2: no AVX-512, no bfloat16), so one run shows both CPUs' split.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.machine import cpu_description

REPO = Path(__file__).resolve().parent.parent

AUGMENT = {"rotation": 40, "width_shift": 0.2, "height_shift": 0.2, "shear": 0.2, "zoom": 0.2,
           "horizontal_flip": True}


def keras_layer_stack(seed):
    import math

    import keras
    return keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomRotation(40 / 360, fill_mode="nearest", seed=seed + 1),
        keras.layers.RandomTranslation(0.2, 0.2, fill_mode="nearest", seed=seed + 2),
        keras.layers.RandomShear(math.tan(math.radians(0.2)), 0.0, fill_mode="nearest", seed=seed + 3),
        keras.layers.RandomZoom(0.2, fill_mode="nearest", seed=seed + 4)])


def median_ms(step, batches):
    step()  # trace and warm up
    times = []
    for _ in range(batches):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2]


def measure(batches, size, batch_size):
    """One child's figures: {name: median ms per batch}."""
    import keras
    import numpy as np
    import tensorflow as tf

    from dogs_vs_cats.augment import augmentation
    from dogs_vs_cats.nets import conv_base, small_convnet
    from dogs_vs_cats.precision import precision_policy, resolve_precision

    images = np.random.default_rng(0).uniform(0, 255, (batch_size, size, size, 3)).astype("float32")
    labels = np.random.default_rng(1).integers(0, 2, (batch_size, 1)).astype("float32")
    figures = {}
    for name, layer in (("RandomAffine", augmentation(AUGMENT, seed=1)), ("Keras layer stack", keras_layer_stack(1))):
        run = tf.function(lambda x, layer=layer: layer(x, training=True))
        figures[f"augmentation: {name}"] = median_ms(lambda run=run: run(images).numpy(), batches)
    for precision in ("float32", "auto"):
        with precision_policy(precision, "bench"):
            model = small_convnet(size, dropout=0.5)
        model.compile(optimizer=keras.optimizers.RMSprop(1e-4), loss="binary_crossentropy")
        figures[f"convnet training step, {precision}"] = median_ms(
            lambda model=model: model.train_on_batch(images, labels), batches)
        with precision_policy(precision, "bench"):
            base = conv_base("none", size)
        forward = tf.function(lambda x, base=base: base(x, training=False))
        figures[f"VGG16 conv base forward, {precision}"] = median_ms(lambda forward=forward: forward(images).numpy(),
                                                                     batches)
    figures["precision auto runs as"] = resolve_precision("auto")
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--size", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.batches, args.size, args.batch_size)))
        return
    columns = {}
    for label, cap in (("full oneDNN", None), ("ONEDNN_MAX_CPU_ISA=AVX2", "AVX2")):
        env = dict(os.environ)  # TensorFlow's log quiet as bench/__init__.py makes it
        env.pop("ONEDNN_MAX_CPU_ISA", None)
        if cap:
            env["ONEDNN_MAX_CPU_ISA"] = cap
        result = subprocess.run([sys.executable, "-m", "bench.scratch_epoch", "--child", "--batches",
                                 str(args.batches), "--size", str(args.size), "--batch-size", str(args.batch_size)],
                                cwd=REPO, env=env, capture_output=True, text=True)
        if result.returncode:
            raise SystemExit(f"{label}: the measuring process failed:\n{result.stderr[-2000:]}")
        columns[label] = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"CPU: {cpu_description()}")
    print(f"median ms per batch of {args.batch_size} images at {args.size} px, {args.batches} batches\n")
    labels = list(columns)
    print("| | " + " | ".join(labels) + " |\n|---|" + "---:|" * len(labels))
    for name in columns[labels[0]]:
        print(f"| {name} | " + " | ".join(f"{columns[label][name]:.0f}" if isinstance(columns[label][name], float)
                                         else columns[label][name] for label in labels) + " |")


if __name__ == "__main__":
    main()
