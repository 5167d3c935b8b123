"""Step time and bytes exchanged per step with one and two workers on the loopback
(`distribute: multi_worker`, docs/scaling-out.md).

    python -m bench.multi_worker [--model head|finetune] [--images 160] [--batch 20] [--epochs 2]

Each worker is a process of its own with its TF_CONFIG, as on separate machines, training
through `dogs_vs_cats.training.train` on random data of the stage's shapes: `head` the dense
head on 4x4x512 features (train_head), `finetune` VGG16 at 150 px with block5 and the head
trainable (random weights: the arithmetic is ImageNet's). The step time is the mean epoch
time after the first (tracing) over the steps of an epoch; the bytes are the loopback
interface's received bytes over the run, per step. Both workers share this machine's cores,
so the two-worker figure is the cost of the exchange, not a speed-up.
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


def loopback_bytes():
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, fields = line.partition(":")
        if name.strip() == "lo":
            return int(fields.split()[0])
    return 0


def worker(model_kind, images, batch, epochs, folder):
    """One worker's run (the process TF_CONFIG describes); writes its timing to `folder`."""
    import keras
    import numpy as np

    from dogs_vs_cats.nets import conv_base, dense_head, stack, unfreeze_from
    from dogs_vs_cats.training import ArrayBatches, Phase, train, training_scope
    params = {"seed": 1, "lr_schedule": "constant", "early_stopping": 0, "precision": "float32",
              "distribute": "multi_worker" if "TF_CONFIG" in os.environ else "none"}
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, images).astype("float32")
    keras.utils.set_random_seed(1)
    with training_scope("bench", params):
        if model_kind == "head":
            x = rng.random((images, 4, 4, 512), dtype="float32")
            model = dense_head((4, 4, 512), 256, 0.5)
        else:
            x = rng.integers(0, 256, (images, 150, 150, 3)).astype("uint8")
            base = conv_base("none", 150)
            model = stack(base, dense_head(base.output_shape[1:], 256, 0.5), "vgg16", "finetuned")
            unfreeze_from(base, "block5_conv1")
        data = {"x": ArrayBatches(x, labels, batch, 1), "validation_data": (x[:batch], labels[:batch])}
        train("bench", model, data, [Phase(epochs, 1e-5)], params, output=Path(folder) / "model.keras",
              logs=Path(folder) / "logs", stepwise=True)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    timing = json.loads((Path(folder) / "logs/timing.json").read_text()) if (Path(folder) / "logs").exists() else {}
    return {"trainable": trainable, **timing}


def run(model_kind, images, batch, epochs, workers):
    ports = []
    for _ in range(workers):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    cluster = [f"127.0.0.1:{port}" for port in ports]
    folders = [tempfile.mkdtemp(prefix="bench-multi-worker-") for _ in range(workers)]
    before, started = loopback_bytes(), time.perf_counter()
    processes = []
    for index, folder in enumerate(folders):
        env = dict(os.environ)
        if workers > 1:
            env["TF_CONFIG"] = json.dumps({"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "bench.multi_worker", "--worker", folder, "--model", model_kind,
             "--images", str(images), "--batch", str(batch), "--epochs", str(epochs)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    if any(process.wait() for process in processes):
        raise SystemExit(f"a worker failed: run it alone with TF_CONFIG set to see why ({folders})")
    wall, exchanged = time.perf_counter() - started, loopback_bytes() - before
    result = json.loads((Path(folders[0]) / "result.json").read_text())
    steps = epochs * -(-images // batch)
    result.update(workers=workers, wall_s=round(wall, 1), steps=steps,
                  step_s=round(result["epoch_s"] / -(-images // batch), 3),
                  loopback_mb_per_step=round(exchanged / steps / 2**20, 1))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("head", "finetune"), default="head")
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = worker(args.model, args.images, args.batch, args.epochs, args.worker)
        (Path(args.worker) / "result.json").write_text(json.dumps(result))
        return
    print(cpu_description())
    print(f"{'workers':>7} {'trainable':>10} {'step s':>7} {'loopback MB/step':>17} {'wall s':>7}")
    for workers in (1, 2):
        r = run(args.model, args.images, args.batch, args.epochs, workers)
        print(f"{workers:>7} {r['trainable']:>10,} {r['step_s']:>7} {r['loopback_mb_per_step']:>17} {r['wall_s']:>7}")


if __name__ == "__main__":
    main()
