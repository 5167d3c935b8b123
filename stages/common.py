"""What every stage shares: reading params.yaml, one-line errors, atomic outputs."""

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path

PARAMS_FILE = Path("params.yaml")


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


def stage_help(module_path, doc):
    """What `python -m stages.<name> --help` prints: the module's docstring, then what the
    stage reads, writes and which params it uses, as dvc.yaml declares them."""
    from ruamel.yaml import YAML
    name = Path(module_path).stem
    lines = [f"usage: python -m stages.{name} [-h]   (or: dvc repro {name})", "", (doc or "").strip()]
    dvc_yaml = Path(module_path).resolve().parent.parent / "dvc.yaml"
    stages = YAML(typ="safe", pure=True).load(dvc_yaml.read_text())["stages"] if dvc_yaml.is_file() else {}
    for stage, spec in stages.items():
        if spec.get("cmd") == f"python -m stages.{name}":
            outs = [next(iter(o)) if isinstance(o, dict) else o for o in spec.get("outs", []) + spec.get("metrics", [])]
            for title, entries in (("reads (dvc.yaml deps)", spec.get("deps", [])), ("writes (outs)", outs),
                                   ("params (params.yaml)", spec.get("params", []))):
                lines += ["", f"{title}:"] + [f"  {entry}" for entry in entries]
    return "\n".join(lines)


def run(main):
    """Entry point of every stage: `-h`/`--help` prints what it does; a StageError becomes
    `error: ...` and exit status 1."""
    arguments = sys.argv[1:]
    if arguments:
        if arguments[0] in ("-h", "--help"):
            print(stage_help(sys.argv[0], sys.modules["__main__"].__doc__))
            sys.exit(0)
        print(f"error: {Path(sys.argv[0]).stem} takes no arguments (params come from params.yaml): "
              f"see `python -m stages.{Path(sys.argv[0]).stem} --help`", file=sys.stderr)
        sys.exit(2)
    try:
        main()
    except StageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
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
