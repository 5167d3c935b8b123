"""Writing outputs: atomically (a temporary name, then one rename), checked to be writable
before the work, and sweeping what killed runs left behind."""

import contextlib
import json
import os
import re
import shutil
from pathlib import Path

from dogs_vs_cats.errors import StageError

# What atomic_file and atomic_dir leave behind when a process is killed before it cleans up.
DEBRIS = re.compile(r"\.(tmp|old)-(\d+)-")


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


def sweep_debris(roots):
    """Remove the temporaries of killed runs under `roots`: `.tmp-<pid>-*` and `.old-<pid>-*`
    entries whose process is gone (those of a live process, such as a stage running beside
    this one, stay)."""
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


def restore_from_dvc_cache(stage, root="."):
    """Put back the outputs of `stage` that DVC deleted before running it and that the failed
    run did not write: their versions in dvc.lock, copied from the DVC cache. Returns what
    was restored and what could not be (not in the cache: `cache: false` outputs of a
    stage without run cache). DVC deletes a stage's outputs before its command starts;
    this undoes that when the command fails or is interrupted."""
    from dvc.repo import Repo
    from ruamel.yaml import YAML
    lock_file = Path(root) / "dvc.lock"
    if not lock_file.is_file():
        return [], []
    entry = (YAML(typ="safe", pure=True).load(lock_file.read_text()) or {}).get("stages", {}).get(stage, {})
    cache = Repo(root).cache.local
    restored, lost = [], []
    for out in entry.get("outs", []):
        target, md5 = Path(root) / out["path"], out.get("md5")
        if target.exists() or not md5:
            continue
        source = Path(cache.oid_to_path(md5))
        if not source.is_file():
            lost.append(out["path"])
            continue
        if md5.endswith(".dir"):
            listing = json.loads(source.read_text())
            files = [(entry["relpath"], Path(cache.oid_to_path(entry["md5"]))) for entry in listing]
            if not all(path.is_file() for _, path in files):
                lost.append(out["path"])
                continue
            with atomic_dir(target) as tmp:
                for relpath, path in files:
                    (tmp / relpath).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, tmp / relpath)
        else:
            with atomic_file(target) as tmp:
                shutil.copyfile(source, tmp)
        restored.append(out["path"])
    return restored, lost
