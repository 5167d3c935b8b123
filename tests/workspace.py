"""The throwaway workspaces of dogs_vs_cats.workspace (shared with bench/), and what only
the tests do with them: copy one, put one back to its last commit, call a stage's main()."""

import os
import shutil
from pathlib import Path

from dogs_vs_cats.workspace import (  # noqa: F401  (re-exported for the test modules)
    BIN,
    compose,
    copy_project,
    dvc,
    environment,
    make_workspace,
    REPO,
    run,
    stage_command,
    stages_run,
    tamper_keeping_size_and_mtime,
    update_params,
    write_mnist_npz,
)


def restore(workspace):
    """Back to the last commit without recomputing anything: git's files (params.yaml,
    dvc.lock, the uncached metrics and logs), then DVC's outputs from the cache."""
    # HEAD, not the index: DVC's autostage (core.autostage) stages what a run changed.
    run(workspace, "git", "reset", "-q", "--hard", "HEAD")
    # The uncached logs and metrics written anew from HEAD: a run replaces their files with
    # ones of the same size within a second, which git's stat check can take as unchanged.
    for folder in ("dvclive", "metrics"):
        shutil.rmtree(workspace / folder, ignore_errors=True)
    run(workspace, "git", "checkout", "HEAD", "--", "dvclive", "metrics")
    dvc(workspace, "checkout", "--force")
    status = dvc(workspace, "status").stdout
    assert "up to date" in status, status


def stage_paths(stage, params_file="params.yaml"):
    """The paths dvc.yaml passes to `stage`, for calling its main() in a test."""
    return [Path(arg) for arg in stage_command(stage, params_file)[3:]]


def copy_workspace(source, target):
    """A copy of a git + DVC workspace (its cache included) that lives on its own. The files of
    its DVC cache are hard links to the source's, a third of the bytes copied otherwise: DVC
    writes each once, under its hash, and never changes it (the workspace's files are copies)."""
    def copy(path, to):
        if Path(path).relative_to(source).parts[:2] == (".dvc", "cache"):
            os.link(path, to)
        else:
            shutil.copy2(path, to)
    shutil.copytree(source, target, symlinks=True, copy_function=copy)
    return target
