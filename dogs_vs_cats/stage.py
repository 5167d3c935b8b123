"""How a DVC stage runs: `python -m stages.<name> PATH...`, the paths dvc.yaml's `cmd`
passes (what it reads, then what it writes), params from params.yaml; one-line errors,
clean interruptions, outputs checked to be writable before the work."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from dogs_vs_cats.errors import StageError
from dogs_vs_cats.outputs import check_writable, restore_from_dvc_cache, sweep_debris


class Terminated(KeyboardInterrupt):
    """SIGTERM (what `kill` and `timeout` send), handled like Ctrl-C: temporaries are removed."""


def _terminate(signum, frame):
    raise Terminated()


def _dvc_specs(name):
    """dvc.yaml's specs of the stages whose cmd is `python -m stages.<name>` (a foreach
    stage's body, with its ${...} left in), for --help; dvc.yaml is found from the
    working directory or above the stages package."""
    from ruamel.yaml import YAML
    package = sys.modules.get("stages")
    folders = [Path.cwd()] + ([Path(package.__file__).resolve().parent.parent] if package and package.__file__ else [])
    dvc_yaml = next((folder / "dvc.yaml" for folder in folders if (folder / "dvc.yaml").is_file()), None)
    stages = YAML(typ="safe", pure=True).load(dvc_yaml.read_text())["stages"] if dvc_yaml else {}
    specs = (spec.get("do", spec) for spec in stages.values())
    return [spec for spec in specs if spec.get("cmd", "").split()[:3] == ["python", "-m", f"stages.{name}"]]


def declared_params(name):
    """The params dvc.yaml lists for the stages run as `python -m stages.<name>` ("augment",
    "image.size", ...): empty where no dvc.yaml is found."""
    return [param for spec in _dvc_specs(name) for param in spec.get("params", []) if isinstance(param, str)]


def _paths(entries):
    return [next(iter(entry)) if isinstance(entry, dict) else entry for entry in entries]


def usage(name, inputs, outputs):
    return f"usage: python -m stages.{name} {' '.join((*inputs, *outputs))}".rstrip()


def stage_help(name, doc, inputs=(), outputs=()):
    """What `python -m stages.<name> --help` prints: the usage, the module's docstring, then
    what the stage reads, writes and which params it uses, as dvc.yaml declares them."""
    lines = [f"{usage(name, inputs, outputs)}   (or: dvc repro {name})", "", (doc or "").strip()]
    for spec in _dvc_specs(name):
        outs = _paths(spec.get("outs", []) + spec.get("metrics", []))
        for title, entries in (("cmd (dvc.yaml)", [spec["cmd"]]), ("reads (dvc.yaml deps)", spec.get("deps", [])),
                               ("writes (outs)", outs), ("params (params.yaml)", spec.get("params", []))):
            lines += ["", f"{title}:"] + [f"  {entry}" for entry in entries]
    return "\n".join(lines)


def run(main, inputs=(), outputs=()):
    """Entry point of every stage: `main(*paths)` with the paths dvc.yaml passes, named
    `inputs` (what it reads) then `outputs` (what it writes).

    `-h`/`--help` prints what it does; a StageError becomes `error: ...` and exit status 1;
    Ctrl-C and SIGTERM remove what was half-written and exit 130 and 143. Before the work:
    the temporaries of killed runs beside the outputs are swept and every output is
    checked to be writable.
    """
    name = Path(sys.argv[0]).stem
    given = sys.argv[1:]
    if given[:1] in (["-h"], ["--help"]):
        print(stage_help(name, sys.modules["__main__"].__doc__, inputs, outputs))
        sys.exit(0)
    if len(given) != len(inputs) + len(outputs) or any(arg.startswith("-") for arg in given):
        print(f"error: {name} takes no arguments but the paths dvc.yaml passes "
              f"({usage(name, inputs, outputs)}; params come from params.yaml): "
              f"see `python -m stages.{name} --help`", file=sys.stderr)
        sys.exit(2)
    paths = [Path(arg) for arg in given]
    written = paths[len(inputs):]
    # Replace the start-up handlers of stages/__init__.py: from here on an interruption
    # removes temporaries and restores (below), as any error does.
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _main(main, paths, written)
    except BaseException as e:
        if not (isinstance(e, SystemExit) and not e.code):
            restore_under_dvc()
        raise


def restore_under_dvc():
    """Under `dvc repro` (DVC_STAGE set), a failed or interrupted stage finds its outputs
    already deleted by DVC: put back the cached ones (docs/real-data.md#what-survives-what).
    Also run, in a process of its own, by a signal during a stage's start-up (stages/__init__.py)."""
    name = os.environ.get("DVC_STAGE", "").split(":")[-1]
    # `check`'s one output is persistent (DVC never deletes it) and the same bytes whenever
    # check passes: nothing to put back.
    if not name or name == "check":
        return
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut the restore short
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    root = os.environ.get("DVC_ROOT", ".")
    try:
        restored, lost = restore_from_dvc_cache(name, root)
    except Exception as e:  # the stage's own error is the one to see: this is one line after it
        reason = (str(e).splitlines() or [""])[0]
        print(f"could not restore the outputs DVC deleted ({type(e).__name__}: {reason}): "
              f"`dvc checkout`, or `dvc repro {name}` makes them again", file=sys.stderr)
        return
    if restored:
        print(f"restored the previous {', '.join(restored)} from the DVC cache", file=sys.stderr)
    in_git = _tracked_by_git(lost, root)
    if in_git:
        print(f"could not restore {', '.join(in_git)} (not cached by DVC): `git checkout {' '.join(in_git)}`",
              file=sys.stderr)
    others = [path for path in lost if path not in in_git]
    if others:  # a fresh clone's cache is empty: `dvc checkout` has nothing to bring back
        print(f"could not restore {', '.join(others)} (not in this machine's DVC cache): `dvc pull` them from "
              f"the remote, or `dvc repro {name}` makes them again", file=sys.stderr)


def _tracked_by_git(paths, root):
    """Those of `paths` that git tracks (`git checkout` brings them back)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--", *paths], cwd=root, capture_output=True, text=True,
                                timeout=30).stdout.split("\0") if paths else []
    except (OSError, subprocess.SubprocessError):
        return []
    return [path for path in paths if path in listed or any(name.startswith(f"{path}/") for name in listed)]


def _main(main, paths, written):
    try:
        sweep_debris(written)
        check_writable(written)
        main(*paths)
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
