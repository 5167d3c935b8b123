"""`make full`'s time on more cores, projected from VGG16's arithmetic.

    python -m bench.full_projection [--train 19000] [--holdout 2000] [--test-photos 12500]
        [--size 150] [--epochs 3] [--gflops-per-core 215] [--cores 2 4 8 16 32]

Counts the floating-point operations of each stage of the full chain from the layer shapes
(a 3x3 convolution is 2 x 9 x Cin x Cout per output pixel; the dense head and the
non-convolution layers are under 1% and left out) and divides by a rate: by default 215
GFLOP/s per core, what 2 Zen 4 cores computed in bfloat16 through the `features` stage
(docs/full-data.md). The projection assumes the rate scales with the cores and leaves out
decoding the photos and Python's overhead, so it is a lower bound; on the 2-core machine
it is within the table's measured times.
"""

import argparse

# VGG16's conv base: (block, convolutions, filters).
BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))


def conv_flops(size):
    """{block: forward GFLOP per image} of VGG16's conv base at `size` x `size` pixels."""
    flops, channels, side = {}, 3, size
    for block, convs, filters in BLOCKS:
        total = 0
        for _ in range(convs):
            total += 2 * 9 * channels * filters * side * side  # 'same' padding keeps the side
            channels = filters
        flops[block] = total / 1e9
        side //= 2  # 2x2 max pooling, 'valid'
    return flops


def stage_flops(train, holdout, test_photos, size, epochs):
    """GFLOP of each stage of `make full` and the submission."""
    blocks = conv_flops(size)
    base = sum(blocks.values())
    frozen = sum(blocks[b] for b in (1, 2, 3, 4))
    # fine-tuning: blocks 1-4 forward, block5 forward and backward (about twice the forward)
    epoch = train * (frozen + 3 * blocks[5]) + holdout / 2 * base  # plus the validation images
    return {"features": (train + holdout) * base, "finetune": epochs * epoch,
            "evaluate (head and finetuned)": holdout / 2 * base, "submission": test_photos * base}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=19000, help="training photos (both classes)")
    parser.add_argument("--holdout", type=int, default=2000, help="validation and test photos (both)")
    parser.add_argument("--test-photos", type=int, default=12500, help="the submission's photos")
    parser.add_argument("--size", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs")
    parser.add_argument("--gflops-per-core", type=float, default=215.0)
    parser.add_argument("--cores", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    args = parser.parse_args()
    flops = stage_flops(args.train, args.holdout, args.test_photos, args.size, args.epochs)
    print(f"VGG16 conv base at {args.size} px: {sum(conv_flops(args.size).values()):.1f} GFLOP per photo forward")
    print(f"{'stage':<32} {'TFLOP':>8} " + " ".join(f"{c:>5} cores" for c in args.cores))
    for name, value in [*flops.items(), ("total", sum(flops.values()))]:
        minutes = [value / (args.gflops_per_core * cores) / 60 for cores in args.cores]
        print(f"{name:<32} {value / 1e3:>8.0f} " + " ".join(f"{m:>7.1f} min" for m in minutes))


if __name__ == "__main__":
    main()
