"""What every stage shares: reading params.yaml, one-line errors, atomic outputs."""

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path

import yaml

PARAMS_FILE = Path("params.yaml")


class StageError(Exception):
    """A problem the user can fix: printed as one line, without a traceback."""


def load_params(path=PARAMS_FILE):
    try:
        with open(path) as f:
            return yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise StageError(f"{path} not found: run the stage from the project root") from None
    except yaml.YAMLError as e:
        raise StageError(f"{path} is not valid YAML ({str(e).splitlines()[0]}): fix the file") from None


def choice(value, allowed, name):
    """Check a param against its allowed values, naming the param on error."""
    if value not in allowed:
        options = " | ".join(str(a) for a in allowed)
        raise StageError(f"params.yaml: {name} is {value!r}; use one of: {options}")
    return value


def run(main):
    """Entry point of every stage: a StageError becomes `error: ...` and exit status 1."""
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
