"""What the `check` stage verifies before DVC touches any output: params.yaml against the
schema, and every file a param names (the archives, base.weights, mnist.npz) present, of
the right kind, and no other stage's output.

DVC deletes a stage's outputs before it runs the stage's command, so a stage that finds a
bad value itself has already lost its previous outputs when it says so. `check` runs
upstream of every stage: when it fails, DVC stops before any other stage starts.
"""

import os
from pathlib import Path

from dogs_vs_cats.archives import DOWNLOAD_HELP, SUBMISSION_HELP
from dogs_vs_cats.config import load_params
from dogs_vs_cats.errors import StageError

# What the check stage writes: always the same bytes, so passing it re-runs nothing below.
PASSED = "params.yaml and the files it names passed `python -m stages.check`\n"


def produced(dvc_yaml):
    """{path: stage} for what dvc.yaml's stages write (their outs, a foreach stage's for each
    of its keys): present only once run."""
    from ruamel.yaml import YAML
    stages = YAML(typ="safe", pure=True).load(Path(dvc_yaml).read_text()).get("stages", {})
    paths = {}
    for name, spec in stages.items():
        keys = list(spec["foreach"]) if isinstance(spec.get("foreach"), dict) else [None]
        spec = spec.get("do", spec)
        for key in keys:
            for entry in spec.get("outs", []) + spec.get("metrics", []):
                path = next(iter(entry)) if isinstance(entry, dict) else entry
                path = path.replace("${key}", key) if key else path
                if "${" not in path:
                    paths[Path(path)] = f"{name}@{key}" if key else name
    return paths


# Params naming a stage's output that they may name: the sample stage writes the archives
# the pipeline runs on out of the box.
MAY_BE_MADE = {"data.archive": "sample", "submission.archive": "sample"}


def made_by(path, made):
    """(output, stage) when `path` is an output of `made` ({path: stage}) or inside one, else None."""
    absolute = Path(os.path.abspath(path))
    return next(((output, stage) for output, stage in made.items()
                 if absolute.is_relative_to(os.path.abspath(output))), None)


def file_problem(key, value, what, help, made=None):
    """Why the file the param `key` names cannot be used, or None. `made` ({path: stage})
    is what dvc.yaml's stages write: another stage's output is no input (DVC would delete
    it, or refuse the whole pipeline as a cycle), except the sample's archives."""
    path = Path(value)
    found = made_by(path, made or {})
    if found:
        output, stage = found
        if MAY_BE_MADE.get(key) == stage:
            return None
        same = os.path.abspath(path) == os.path.abspath(output)
        where = "an output" if same else f"inside {output}, an output"
        return f"{key} {value} is {where} of the `{stage}` stage, not a file of yours: {help}"
    if path.is_dir():
        return f"{key} {value} is a folder, not {what}: {help}"
    if not path.exists():
        return f"{key} {value} not found: {help}"
    if not path.is_file():
        return f"{key} {value} is not a regular file (a FIFO or a device), not {what}: {help}"
    return None


def input_problems(params, made=None):
    """One line per file a param names that cannot be used."""
    weights = params.base.weights
    checks = [("data.archive", params.data.archive, "a zip archive", DOWNLOAD_HELP),
              ("submission.archive", params.submission.archive, "a zip archive", SUBMISSION_HELP)]
    if weights not in ("imagenet", "none"):
        checks.append(("base.weights", weights, "a weights file",
                       "use imagenet, none, or the path of a VGG16 notop weights file (.weights.h5 or .h5)"))
    if params.mnist.npz:
        checks.append(("mnist.npz", params.mnist.npz, "an .npz file",
                       'set mnist.npz to a local copy of Keras\' mnist.npz, or to "" to download it'))
    return [problem for problem in (file_problem(*check, made=made) for check in checks) if problem]


def check(params_file="params.yaml", dvc_yaml="dvc.yaml"):
    """StageError naming every bad param and every unusable file in one line."""
    params = load_params(params_file)
    problems = input_problems(params, produced(dvc_yaml) if Path(dvc_yaml).is_file() else None)
    if problems:
        raise StageError("; ".join(problems))
