"""Fine-tuning over a pool of views against end to end, and each pass against its FLOP floor.

    python -m bench.pool [--size 150] [--photos 200] [--batch-size 20] [--precision auto]

On random pixels (decoding is not timed), with VGG16 split at block5_conv1 as `finetune`
splits it, one epoch over `--photos` photos of:
- a pass that fills the pool: augmentation, then blocks 1-4 forward (what `views` passes
  cost once);
- an epoch over the pool: block5 and the head trained on pooled block4 maps;
- an end-to-end epoch: augmentation, blocks 1-4 forward, block5 and the head trained
  (what `finetune.cache: false` runs every epoch).
Each is set against its floor, its floating-point operations at the CPU's measured peak
(the best of a large matrix product and a block4 convolution in the same precision): the ratio says how much of the
arithmetic the pass wastes or loses to overhead (goal: within 1.25). Then the end-to-end
epoch over the pool epoch: what each epoch after the pool is filled saves.
"""

import argparse
import time

from bench.full_projection import conv_flops
from bench.machine import cpu_description

AUGMENT = {"rotation": 40, "width_shift": 0.2, "height_shift": 0.2, "shear": 0.2, "zoom": 0.2,
           "horizontal_flip": True}


def peak_gflops(dtype, rounds=10):
    """The CPU's reachable peak in `dtype`: the best rate of a 2048 x 2048 matrix product
    and of a block4-sized convolution (3x3, 512 to 512 channels on 18 x 18 maps, 20 images),
    the arithmetic VGG16 is made of."""
    import keras
    import tensorflow as tf
    a = tf.cast(tf.random.normal((2048, 2048)), dtype)
    maps = tf.cast(tf.random.normal((20, 18, 18, 512)), dtype)
    kernel = tf.cast(tf.random.normal((3, 3, 512, 512)), dtype)
    candidates = [(tf.function(lambda: tf.matmul(a, a)), 2 * 2048**3),
                  (tf.function(lambda: keras.ops.conv(maps, kernel, padding="same")), 2 * 9 * 512 * 512 * 18 * 18 * 20)]
    best = 0.0
    for run, flops in candidates:
        run()
        for _ in range(rounds):
            start = time.perf_counter()
            run().numpy()
            best = max(best, flops / (time.perf_counter() - start) / 1e9)
    return best


def epoch_seconds(step, batches):
    """The time of `step` over every batch, after one untimed batch (tracing)."""
    step(batches[0])
    start = time.perf_counter()
    for batch in batches:
        step(batch)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=150)
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--precision", default="auto", help="auto | float32 | bfloat16")
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    from dogs_vs_cats.augment import augmentation
    from dogs_vs_cats.fitting import frozen_split
    from dogs_vs_cats.nets import conv_base, dense_head, feature_extractor, stack, unfreeze_from
    from dogs_vs_cats.precision import precision_policy, resolve_precision

    precision = resolve_precision(args.precision)
    keras.utils.set_random_seed(0)
    with precision_policy(precision):
        base = conv_base("none", args.size)
        model = stack(base, dense_head(base.output_shape[1:], 256), "vgg16", "finetuned")
        unfreeze_from(base, "block5_conv1")
        lower, upper = frozen_split(base, model.get_layer("head"), "block5_conv1")
    extractor = feature_extractor(lower, "vgg16")
    augmenter = augmentation(AUGMENT, 0)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (args.batch_size, args.size, args.size, 3)).astype(np.float32)
              for _ in range(args.photos // args.batch_size)]
    labels = np.zeros((args.batch_size, 1), np.float32)

    fill = tf.function(lambda x: extractor(augmenter(x, training=True), training=False))
    pooled = [fill(batch).numpy() for batch in images[:1]] * len(images)  # any rows: the arithmetic is the same
    for trained in (model, upper):
        trained.compile(optimizer=keras.optimizers.RMSprop(1e-5), loss="binary_crossentropy")
    end_to_end = keras.Sequential([keras.Input((args.size, args.size, 3)), augmentation(AUGMENT, 0), model])
    end_to_end.compile(optimizer=keras.optimizers.RMSprop(1e-5), loss="binary_crossentropy")

    blocks = conv_flops(args.size)
    frozen = sum(blocks[b] for b in (1, 2, 3, 4))
    # block5 trained: forward, its weights' gradients, and its inputs' gradients but block5_conv1's
    # (nothing below it trains); the head is under 1%.
    block5 = blocks[5] * (3 - 1 / 3)
    peak = peak_gflops(tf.bfloat16 if precision == "bfloat16" else tf.float32)
    photos = len(images) * args.batch_size
    rows = [
        ("pool pass (augment, blocks 1-4 forward)", epoch_seconds(fill, images), frozen),
        ("epoch over the pool (block5 + head trained)",
         epoch_seconds(lambda x: upper.train_on_batch(x, labels), pooled), block5),
        ("end-to-end epoch (augment, blocks 1-4, block5 + head)",
         epoch_seconds(lambda x: end_to_end.train_on_batch(x, labels), images), frozen + block5),
    ]
    print(f"{cpu_description()}; {precision}; peak {peak:.0f} GFLOP/s (the best of a matrix product and a convolution)")
    print(f"{photos} photos at {args.size} px, batches of {args.batch_size}")
    print(f"{'pass':<56} {'s':>7} {'ms/photo':>9} {'GFLOP/photo':>12} {'floor s':>8} {'ratio':>6}")
    for name, seconds, gflop in rows:
        floor = photos * gflop / peak
        print(f"{name:<56} {seconds:>7.1f} {1000 * seconds / photos:>9.1f} {gflop:>12.2f} {floor:>8.1f} "
              f"{seconds / floor:>6.2f}")
    print(f"end-to-end epoch / epoch over the pool: {rows[2][1] / rows[1][1]:.2f}x "
          f"(arithmetic: {(frozen + block5) / block5:.2f}x)")


if __name__ == "__main__":
    main()
