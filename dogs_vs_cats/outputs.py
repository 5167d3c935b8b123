"""Writing outputs: atomically (a temporary name, then one rename), checked to be writable
before the work, and sweeping what killed runs left behind."""

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import stat
from pathlib import Path

from dogs_vs_cats.errors import StageError

# The temporaries atomic_file and atomic_dir make beside a target (and a killed process
# leaves behind): a prefix no user would choose, the writer's pid, a random token, then
# the target's own name, last so that its suffix stays (Keras insists on `.keras`).
PREFIX = ".~dogs-vs-cats-"
DEBRIS = re.compile(re.escape(PREFIX) + r"(tmp|old)-(\d{1,9})-[0-9a-f]{8}-(.+)", re.DOTALL)
# A full disk, a quota or a file size limit: a resource to free, not a broken input.
NO_SPACE = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
            errno.EFBIG: "file too large for its file system (or `ulimit -f`)"}


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


def sweep_debris(outputs):
    """Remove what killed runs left while writing `outputs`: in each output's folder, the
    temporaries named after that output, and in a folder output, any temporary, when the
    pid in the name is no live process (a stage running beside this one keeps its own).
    Not recursive, and only names of DEBRIS's pattern: nothing a user made is touched."""
    for output in map(Path, outputs):
        places = [(output.parent, output.name)]
        if output.is_dir() and not output.is_symlink():
            places.append((output, None))  # what atomic_file wrote into the folder
        for folder, name in places:
            try:
                entries = list(os.scandir(folder))
            except OSError:  # missing or unreadable: nothing of ours there
                continue
            for entry in entries:
                match = DEBRIS.fullmatch(entry.name)
                if not match or (name is not None and match.group(3) != name) or alive(int(match.group(2))):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    Path(entry.path).unlink(missing_ok=True)


def alive(pid):
    """Whether process `pid` runs (someone else's counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _temp_name(target: Path, kind="tmp") -> Path:
    # Same folder (so the rename is atomic); the pid says whose it is, the token keeps two
    # writers of one process apart.
    return target.with_name(f"{PREFIX}{kind}-{os.getpid()}-{secrets.token_hex(4)}-{target.name}")


@contextlib.contextmanager
def disk_errors_are_one_line(target):
    """A full disk, a quota or a file size limit while writing `target`: one line naming it."""
    try:
        yield
    except OSError as e:
        if e.errno not in NO_SPACE:
            raise
        raise StageError(f"{NO_SPACE[e.errno]} writing {target}: free space and run again") from None


def write_target(target):
    """Where a write to `target` goes: ("file", path) to replace atomically, following a
    symbolic link to what it names (the link stays a link), or ("stream", path) for a
    character device or FIFO (/dev/stdout, /dev/null), which is written into. StageError
    for anything else (a folder, a socket) and for a path that cannot be looked at."""
    target = Path(target)
    try:
        mode = os.stat(target).st_mode  # follows links
    except FileNotFoundError:
        mode = None  # missing, or a link to a missing file: written where the link points
    except OSError as e:  # a link loop, a file where a folder should be
        raise StageError(f"{target} cannot be written ({e.strerror}): give another path") from None
    if mode is not None and (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
        return "stream", target
    if mode is not None and not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
        raise StageError(f"{target} is {kind}, not a file it can replace: give the path of a file")
    if target.is_symlink():
        real = Path(os.path.realpath(target))
        # DVC's checkout with cache.type symlink links an output into its cache: a new
        # version replaces that link, never the cached copy.
        if not (re.fullmatch(r"[0-9a-f]{2}", real.parent.name) and re.fullmatch(r"[0-9a-f]{30}", real.name)):
            return "file", real
    return "file", target


@contextlib.contextmanager
def atomic_file(target):
    """Yield a temporary path; on success it replaces `target` in one rename. A device or
    FIFO is written into instead (its own path is yielded); a link's target is replaced.
    A full disk is one line naming `target`, and nothing half-written stays."""
    kind, path = write_target(target)
    if kind == "stream":
        with disk_errors_are_one_line(target):
            yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    try:
        with disk_errors_are_one_line(target):
            yield tmp
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(target):
    """Yield an empty temporary folder; on success it takes the place of `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = _temp_name(target), _temp_name(target, "old")
    tmp.mkdir()
    try:
        with disk_errors_are_one_line(target):
            yield tmp
            if target.exists():
                os.replace(target, old)
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_files(folder):
    """Yield an empty temporary folder beside `folder`; on success each file written there
    replaces its namesake in `folder` (the folder's other files stay): outputs that are
    several files change together, or not at all."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(folder)
    tmp.mkdir()
    try:
        with disk_errors_are_one_line(folder):
            yield tmp
            folder.mkdir(exist_ok=True)
            for file in sorted(tmp.iterdir()):
                os.replace(file, folder / file.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def scratch_dir(target):
    """A folder beside `target` for what a stage needs only while it makes `target` (a pool
    of views on disk), removed when the block ends, however it ends; one a killed run left
    is swept by the next run's `sweep_debris`, as its other temporaries are."""
    folder = _temp_name(Path(target), "tmp")
    with disk_errors_are_one_line(folder):
        folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


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
