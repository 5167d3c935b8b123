"""What a second worker buys (`distribute: multi_worker`, docs/scaling-out.md): the epoch time
of one worker pinned to one core against two workers pinned to one core each, as two
machines of one core would run it, for `train_head` and `finetune`, and the bytes the
workers exchange per step over the loopback.

    python -m bench.multi_worker [--models head finetune] [--images 80] [--validation 40]
                                 [--batch 20] [--size 150] [--epochs 3]

Each worker is a process of its own, pinned to its core as `taskset -c N` pins it, with its
TF_CONFIG (none for the single worker, which trains as one process), training through
`dogs_vs_cats.training.train` on random pictures of the stage's shapes: `head` the dense
head on 4x4x512 features with dropout (train_head), `finetune` VGG16 at `--size` px with
block5 and the head trainable, on augmented pictures (random weights: the arithmetic is
ImageNet's). The epoch time is the mean after the first (tracing); the ratio is two
workers' over one's (the goal: at most 0.6, each worker doing half the work); the bytes
are the loopback interface's received bytes over the run, per step. Run it on a quiet
machine with at least two cores: other work on the cores skews both sides.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.machine import cpu_description

AUGMENT = {"rotation": 40, "width_shift": 0.2, "height_shift": 0.2, "shear": 0.2, "zoom": 0.2,
           "horizontal_flip": True}


def loopback_bytes():
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, fields = line.partition(":")
        if name.strip() == "lo":
            return int(fields.split()[0])
    return 0


def worker(model_kind, images, validation, batch, size, epochs, folder):
    """One worker's run (the process TF_CONFIG describes, or one process without it)."""
    import numpy as np

    from dogs_vs_cats.batches import ArrayBatches
    from dogs_vs_cats.distribute import training_scope
    from dogs_vs_cats.nets import conv_base, dense_head, stack, unfreeze_from
    from dogs_vs_cats.training import Phase, train
    params = {"seed": 1, "lr_schedule": "constant", "early_stopping": 0, "precision": "float32", "worker_timeout": 600,
              "distribute": "multi_worker" if "TF_CONFIG" in os.environ else "none"}
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, images + validation).astype("float32")
    with training_scope("bench", params):
        if model_kind == "head":
            x = rng.random((images + validation, 4, 4, 512), dtype="float32")
            model, augment = dense_head((4, 4, 512), 256, 0.5), None
        else:
            x = rng.integers(0, 256, (images + validation, size, size, 3)).astype("uint8")
            base = conv_base("none", size)
            model = stack(base, dense_head(base.output_shape[1:], 256, 0.5), "vgg16", "finetuned")
            unfreeze_from(base, "block5_conv1")
            augment = AUGMENT
        data = {"x": ArrayBatches(x[:images], labels[:images], batch, 1),
                "validation_data": (x[images:], labels[images:]), "validation_batch_size": batch}
        train("bench", model, data, [Phase(epochs, 1e-5)], params, augment=augment,
              output=Path(folder) / "model.keras", logs=Path(folder) / "logs")
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    logs = Path(folder) / "logs/timing.json"
    return {"trainable": trainable, **(json.loads(logs.read_text()) if logs.exists() else {})}


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run(args, model_kind, workers, cores):
    """`workers` processes, worker i pinned to cores[i]; the chief's timing and the traffic."""
    cluster = [f"127.0.0.1:{port}" for port in free_ports(workers)]
    folders = [tempfile.mkdtemp(prefix="bench-multi-worker-") for _ in range(workers)]
    before, started = loopback_bytes(), time.perf_counter()
    processes = []
    for index, (folder, core) in enumerate(zip(folders, cores)):
        env = dict(os.environ)
        env.pop("TF_CONFIG", None)
        if workers > 1:
            env["TF_CONFIG"] = json.dumps({"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}})
        command = [sys.executable, "-m", "bench.multi_worker", "--worker", folder, "--models", model_kind,
                   "--images", str(args.images), "--validation", str(args.validation), "--batch", str(args.batch),
                   "--size", str(args.size), "--epochs", str(args.epochs)]
        processes.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          preexec_fn=lambda core=core: os.sched_setaffinity(0, {core})))
    if any(process.wait() for process in processes):
        raise SystemExit(f"a worker failed: run it alone with TF_CONFIG set to see why ({folders})")
    wall, exchanged = time.perf_counter() - started, loopback_bytes() - before
    result = json.loads((Path(folders[0]) / "result.json").read_text())
    steps = args.epochs * -(-args.images // args.batch)
    result.update(wall_s=round(wall, 1), loopback_mb_per_step=round(exchanged / steps / 2**20, 1))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=("head", "finetune"), default=["head", "finetune"])
    parser.add_argument("--images", type=int, default=80, help="training pictures (default 80)")
    parser.add_argument("--validation", type=int, default=40, help="validation pictures (default 40)")
    parser.add_argument("--batch", type=int, default=20, help="the global batch (default 20)")
    parser.add_argument("--size", type=int, default=150, help="finetune's picture size in px (default 150)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs; the first is not timed (default 3)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = worker(args.models[0], args.images, args.validation, args.batch, args.size, args.epochs, args.worker)
        (Path(args.worker) / "result.json").write_text(json.dumps(result))
        return
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit("needs two cores to pin two workers to")
    print(cpu_description())
    print(f"{args.images} training and {args.validation} validation pictures, global batch {args.batch}, "
          f"{args.epochs} epochs (the first not timed); finetune at {args.size} px")
    print(f"{'model':>9} {'trainable':>10} {'1 worker s/epoch':>17} {'2 workers s/epoch':>18} {'ratio':>6} "
          f"{'loopback MB/step':>17}")
    for model_kind in args.models:
        one = run(args, model_kind, 1, cores[:1])
        two = run(args, model_kind, 2, cores[:2])
        ratio = two["epoch_s"] / one["epoch_s"]
        print(f"{model_kind:>9} {one['trainable']:>10,} {one['epoch_s']:>17} {two['epoch_s']:>18} {ratio:>6.2f} "
              f"{two['loopback_mb_per_step']:>17}", flush=True)


if __name__ == "__main__":
    main()
