"""Throwaway git + DVC workspaces holding this checkout's pipeline (dvc.yaml, params.yaml,
stages/ and this library), run through dvc: what the benchmarks (bench/) and the tests
build on. Needs the checkout, not only the installed package."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[1]  # the checkout
BIN = Path(sys.executable).parent

# The whole DAG in minutes: 48 px images (the small convnet needs 46), 8/4/4 per class, one epoch, random VGG16 weights.
TINY_PARAMS = {
    "sample": {"per_class": 20, "min_side": 40, "max_side": 80, "test_images": 12},
    "split": {"train": 8, "validation": 4, "test": 4},
    "image": {"size": 48},
    "base": {"weights": "none"},
    "features": {"batch_size": 8},
    "scratch": {"epochs": 1, "batch_size": 8},
    "scratch_augmented": {"epochs": 1, "batch_size": 8},
    "train_head": {"epochs": 1, "batch_size": 8},
    "features_augmented": {"epochs": 1, "batch_size": 8},
    "finetune": {"epochs": 1, "batch_size": 8},
    "evaluate": {"batch_size": 8},
    "submission": {"batch_size": 8},
    "visualize": {"layers": ["block1_conv1", "block3_conv1"], "channels": 4, "filters": 2, "ascent_steps": 2,
                  "ascent_size": 32, "gradcam_images": 2, "augmentations": 3, "most_wrong": 4},
    "mnist": {"npz": "mnist_small.npz", "epochs": 1, "batch_size": 16},
}


def write_mnist_npz(path, train=96, test=40, seed=0):
    """A small file in Keras' mnist.npz format: a bright bar whose row is the digit."""
    rng = np.random.default_rng(seed)

    def digits(count):
        labels = rng.integers(0, 10, count).astype(np.uint8)
        images = rng.integers(0, 40, (count, 28, 28)).astype(np.uint8)
        for image, label in zip(images, labels):
            image[2 + 2 * label: 4 + 2 * label, 4:24] = 255
        return images, labels

    (x_train, y_train), (x_test, y_test) = digits(train), digits(test)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def update_params(path, overrides):
    """Merge `overrides` ({section: {key: value}}) into a params.yaml, read and written as
    YAML 1.2, as DVC does."""
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    params = yaml.load(Path(path).read_text())
    for section, values in overrides.items():
        params.setdefault(section, {}).update(values)
    with open(path, "w") as f:
        yaml.dump(params, f)


def compose(path, overrides=()):
    """Write to `path` the params.yaml that `dvc exp run -S <override>...` composes from this
    project's conf/ (overrides such as "schedule=book" or "train_head.lr=5e-5")."""
    from dvc.utils.hydra import compose_and_dump
    compose_and_dump(path, str(REPO / "conf"), None, "config", str(REPO), list(overrides))
    return path


def environment():
    # One attempt per S3 request: an unreachable remote fails at once instead of after
    # botocore's retries with backoff, file after file.
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1", AWS_MAX_ATTEMPTS="1")
    env.pop("PYTHONPATH", None)
    return env


def run(cwd, *command, check=True):
    result = subprocess.run(command, cwd=cwd, env=environment(), capture_output=True, text=True)
    if check and result.returncode:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def dvc(cwd, *args, check=True):
    return run(cwd, str(BIN / "dvc"), *args, check=check)


def stages_run(output):
    """Names of the stages a `dvc repro` / `dvc exp run` output says it ran."""
    return set(re.findall(r"Running stage '([^']+)'", output))


def tamper_keeping_size_and_mtime(path):
    """Change bytes in the middle of `path` in place, keeping its size, inode and mtime, so
    only a re-read can notice; return a function that undoes it."""
    info = path.stat()
    with open(path, "r+b") as f:
        f.seek(info.st_size // 2)
        original = f.read(64)
        f.seek(info.st_size // 2)
        f.write(bytes(b ^ 0xFF for b in original))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))

    def undo():
        with open(path, "r+b") as f:
            f.seek(info.st_size // 2)
            f.write(original)
        os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    return undo


def copy_project(path, overrides=TINY_PARAMS):
    """This project's pipeline (dvc.yaml, params.yaml with `overrides` applied, the stages and
    the library) in `path`, where its stages run with `python -m stages.<name> PATH...`."""
    path.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", "params.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(REPO / name, path / name)
    for package in ("stages", "dogs_vs_cats"):
        shutil.copytree(REPO / package, path / package, ignore=shutil.ignore_patterns("__pycache__"))
    update_params(path / "params.yaml", overrides)
    return path


def make_workspace(path, overrides=TINY_PARAMS):
    """A git + DVC repository holding this project's pipeline, with `overrides` applied."""
    copy_project(path, overrides)
    write_mnist_npz(path / "mnist_small.npz")
    run(path, "git", "init", "-q", "-b", "main")
    run(path, "git", "config", "user.email", "test@example.com")
    run(path, "git", "config", "user.name", "test")
    dvc(path, "init", "-q")
    dvc(path, "config", "core.analytics", "false")
    run(path, "git", "add", "-A")
    run(path, "git", "commit", "-qm", "pipeline")
    return path


def stage_command(stage, params_file="params.yaml"):
    """The command dvc.yaml runs for `stage` (not a foreach stage), its ${section.key} taken
    from `params_file`: ["python", "-m", "stages.<name>", PATH...]."""
    yaml = YAML(typ="safe", pure=True)
    command = yaml.load((REPO / "dvc.yaml").read_text())["stages"][stage]["cmd"]
    params = yaml.load(Path(params_file).read_text())

    def value(match):
        section, key = match.group(1).split(".")
        return str(params[section][key])
    return re.sub(r"\$\{([\w.]+)\}", value, command).split()


BENCH_MARKER = "dogs-vs-cats-bench"  # in .git/ of a workspace a benchmark made: it may delete it


def bench_workspace(path, overrides=TINY_PARAMS):
    """make_workspace in `path` for a benchmark, replacing the workspace a benchmark made there
    before. Refuses (SystemExit) the checkout, a folder that holds it, and a folder that is
    not empty and was not made by a benchmark."""
    path = Path(path).resolve()
    if REPO == path or REPO.is_relative_to(path):
        raise SystemExit(f"error: --workdir {path} is this checkout or holds it: give a folder of its own")
    if path.exists() and any(path.iterdir()):
        if not (path / ".git" / BENCH_MARKER).is_file():
            raise SystemExit(f"error: --workdir {path} is not empty and was not made by a benchmark: "
                             f"give a new or empty folder")
        shutil.rmtree(path)
    make_workspace(path, overrides)
    (path / ".git" / BENCH_MARKER).write_text("made by a benchmark of dogs-vs-cats-dvc; it may be deleted\n")
    return path
