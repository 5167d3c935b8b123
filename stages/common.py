"""What every stage shares: reading params.yaml, one-line errors, atomic outputs."""

import contextlib
import json
import os
import re
import shutil
import signal
import sys
from pathlib import Path

PARAMS_FILE = Path("params.yaml")
# Kaggle's names for the training images, which `split` also writes: cat.0.jpg, dog.12.jpg.
IMAGE_NAME = re.compile(r"(cat|dog)\.(0|[1-9][0-9]*)\.jpg")
OUTPUT_ROOTS = ("data", "models", "metrics", "dvclive", "submissions")  # where stages write
# What atomic_file and atomic_dir leave behind when a process is killed before it cleans up.
DEBRIS = re.compile(r"\.(tmp|old)-(\d+)-")


class StageError(Exception):
    """A problem the user can fix: printed as one line, without a traceback."""


def load_params(path=PARAMS_FILE):
    """params.yaml read as DVC reads it (YAML 1.2, so `5e-05` is a number) and checked
    against the one schema (stages/schema.py): every bad key is named in one error."""
    from ruamel.yaml import YAML, YAMLError
    from stages.schema import problems
    try:
        with open(path) as f:
            params = YAML(typ="safe", pure=True).load(f) or {}
    except FileNotFoundError:
        raise StageError(f"{path} not found: run the stage from the project root") from None
    except YAMLError as e:
        raise StageError(f"{path} is not valid YAML ({str(e).splitlines()[0]}): fix the file") from None
    if not isinstance(params, dict):
        raise StageError(f"{path} must map section names to sections, not hold a {type(params).__name__}")
    found = problems(params)
    if found:
        raise StageError(f"{path}: " + "; ".join(found) + ": fix these values (docs/params.md)")
    return params


def choice(value, allowed, name):
    """Check a param against its allowed values, naming the param on error."""
    if value not in allowed:
        options = " | ".join(str(a) for a in allowed)
        raise StageError(f"params.yaml: {name} is {value!r}; use one of: {options}")
    return value


def stage_specs(module_path):
    """The dvc.yaml specs of the stages `python -m stages.<name>` runs, for the module at
    `module_path` (a foreach stage's body, with its ${...} left in)."""
    from ruamel.yaml import YAML
    name = Path(module_path).stem
    dvc_yaml = Path(module_path).resolve().parent.parent / "dvc.yaml"
    stages = YAML(typ="safe", pure=True).load(dvc_yaml.read_text())["stages"] if dvc_yaml.is_file() else {}
    specs = (spec.get("do", spec) for spec in stages.values())
    return [spec for spec in specs if spec.get("cmd", "").split()[:3] == ["python", "-m", f"stages.{name}"]]


def _paths(entries):
    return [next(iter(entry)) if isinstance(entry, dict) else entry for entry in entries]


def stage_help(module_path, doc):
    """What `python -m stages.<name> --help` prints: the module's docstring, then what the
    stage reads, writes and which params it uses, as dvc.yaml declares them."""
    name = Path(module_path).stem
    lines = [f"usage: python -m stages.{name} [-h]   (or: dvc repro {name})", "", (doc or "").strip()]
    for spec in stage_specs(module_path):
        outs = _paths(spec.get("outs", []) + spec.get("metrics", []))
        for title, entries in (("reads (dvc.yaml deps)", spec.get("deps", [])), ("writes (outs)", outs),
                               ("params (params.yaml)", spec.get("params", []))):
            lines += ["", f"{title}:"] + [f"  {entry}" for entry in entries]
    return "\n".join(lines)


class Terminated(KeyboardInterrupt):
    """SIGTERM (what `kill` and `timeout` send), handled like Ctrl-C: temporaries are removed."""


def _terminate(signum, frame):
    raise Terminated()


def stage_outputs(module_path):
    """The outs and metrics dvc.yaml declares for the stage of `module_path` (not a foreach
    stage's, whose paths come as arguments)."""
    outputs = [path for spec in stage_specs(module_path) for path in _paths(spec.get("outs", []) + spec.get("metrics", []))]
    return [Path(path) for path in outputs if "${" not in str(path)]


def check_writable(outputs):
    """Fail before any work when an output cannot be written: its folder (or the nearest
    existing one above it) is read-only, or it exists and is read-only itself."""
    for output in map(Path, outputs):
        folder = output.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        blocked = [path for path in (folder, output) if path.exists() and not os.access(path, os.W_OK)]
        if blocked:
            raise StageError(f"{blocked[0]} is not writable, so {output} cannot be written: "
                             f"make it writable (chmod u+w {blocked[0]}) and run again")


def sweep_debris(roots=OUTPUT_ROOTS):
    """Remove the temporaries of killed runs: `.tmp-<pid>-*` and `.old-<pid>-*` entries whose
    process is gone (those of a live process, such as a stage running beside this one, stay)."""
    for root in map(Path, roots):
        if not root.is_dir():
            continue
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                match = DEBRIS.match(name)
                if match and not _alive(int(match.group(2))):
                    path = Path(folder) / name
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)
            dirs[:] = [d for d in dirs if not DEBRIS.match(d)]


def _alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def run(main, arguments=False):
    """Entry point of every stage: `-h`/`--help` prints what it does; a StageError becomes
    `error: ...` and exit status 1; Ctrl-C and SIGTERM remove what was half-written and
    exit 130 and 143. Before the work: the temporaries of killed runs are swept and every
    output is checked to be writable. Params come from params.yaml; only a stage that says
    so (`arguments`) takes command-line arguments, the paths dvc.yaml passes it."""
    given = sys.argv[1:]
    if given:
        if given[0] in ("-h", "--help"):
            print(stage_help(sys.argv[0], sys.modules["__main__"].__doc__))
            sys.exit(0)
    if given and not arguments:
        print(f"error: {Path(sys.argv[0]).stem} takes no arguments (params come from params.yaml): "
              f"see `python -m stages.{Path(sys.argv[0]).stem} --help`", file=sys.stderr)
        sys.exit(2)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        sweep_debris()
        check_writable(stage_outputs(sys.argv[0]))
        main()
    except StageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:
        # Out of memory (Python's, or TensorFlow's ResourceExhaustedError): a resource to
        # lower, not a broken input.
        if not isinstance(e, MemoryError) and type(e).__name__ != "ResourceExhaustedError":
            raise
        reason = (getattr(e, "message", None) or str(e) or type(e).__name__).splitlines()[0][:160]
        print(f"error: out of memory ({reason}): lower image.size or the stage's batch_size in params.yaml",
              file=sys.stderr)
        sys.exit(1)
    except Terminated:
        print("terminated: nothing half-written was left", file=sys.stderr)
        sys.exit(143)
    except KeyboardInterrupt:
        print("interrupted: nothing half-written was left", file=sys.stderr)
        sys.exit(130)


def _temp_name(target: Path) -> Path:
    # Same folder (so the rename is atomic) and same suffix (Keras insists on `.keras`).
    return target.with_name(f".tmp-{os.getpid()}-{target.name}")


@contextlib.contextmanager
def atomic_file(target):
    """Yield a temporary path; on success it replaces `target` in one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(target)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(target):
    """Yield an empty temporary folder; on success it takes the place of `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(target)
    old = target.with_name(f".old-{os.getpid()}-{target.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def write_json(path, data):
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
