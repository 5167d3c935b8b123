"""What the `check` stage verifies before DVC touches any output: params.yaml against the
schema, and every file a param names that no stage of dvc.yaml writes (the archives,
base.weights, mnist.npz) present and of the right kind.

DVC deletes a stage's outputs before it runs the stage's command, so a stage that finds a
bad value itself has already lost its previous outputs when it says so. `check` runs
upstream of every stage: when it fails, DVC stops before any other stage starts.
"""

from pathlib import Path

from dogs_vs_cats.archives import DOWNLOAD_HELP, SUBMISSION_HELP
from dogs_vs_cats.config import load_params
from dogs_vs_cats.errors import StageError

# What the check stage writes: always the same bytes, so passing it re-runs nothing below.
PASSED = "params.yaml and the files it names passed `python -m stages.check`\n"


def produced(dvc_yaml):
    """The paths dvc.yaml's stages write (their outs without ${...}): present only once run."""
    from ruamel.yaml import YAML
    stages = YAML(typ="safe", pure=True).load(Path(dvc_yaml).read_text()).get("stages", {})
    paths = set()
    for spec in stages.values():
        spec = spec.get("do", spec)
        for entry in spec.get("outs", []) + spec.get("metrics", []):
            path = next(iter(entry)) if isinstance(entry, dict) else entry
            if "${" not in path:
                paths.add(Path(path))
    return paths


def file_problem(key, value, what, help, made=()):
    """Why the file the param `key` names cannot be used, or None."""
    path = Path(value)
    if path in made:
        return None
    if path.is_dir():
        return f"{key} {value} is a folder, not {what}: {help}"
    if not path.exists():
        return f"{key} {value} not found: {help}"
    if not path.is_file():
        return f"{key} {value} is not a regular file (a FIFO or a device), not {what}: {help}"
    return None


def input_problems(params, made=()):
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
    problems = input_problems(params, produced(dvc_yaml) if Path(dvc_yaml).is_file() else ())
    if problems:
        raise StageError("; ".join(problems))
