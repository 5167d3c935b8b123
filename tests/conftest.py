"""The fixtures the test modules share: the first run of the whole DAG, a seeded generator;
and the fast tier's guard: in a run that leaves the `slow` tests out (`make test-fast`,
`pytest -m "not slow"`), a test that starts dvc or make fails, naming the command.
Helpers live in tests/workspace.py (workspaces, from dogs_vs_cats.workspace) and tests/helpers.py."""

import os
import subprocess

import numpy as np
import pytest
from _pytest.mark.expression import Expression

from tests.workspace import dvc, make_workspace, run

SLOW_PROGRAMS = {"dvc", "make"}  # what only a `slow` test may start


def leaves_out_slow(markexpr):
    """Whether `pytest -m markexpr` deselects a test marked `slow` and nothing else."""
    return bool(markexpr) and not Expression.compile(markexpr).evaluate(lambda name, **kwargs: name == "slow")


def program(args):
    """The program a Popen would start: dvc for `dvc ...`, `/path/to/dvc ...` and `python -m dvc ...`."""
    if isinstance(args, (str, bytes, os.PathLike)):
        args = os.fsdecode(args).split()
    argv = [os.fsdecode(arg) for arg in args]
    if len(argv) > 2 and argv[1] == "-m":
        return argv[2]
    return os.path.basename(argv[0]) if argv else ""


class FastTierPopen(subprocess.Popen):
    def __init__(self, args, *rest, **kwargs):
        if program(args) in SLOW_PROGRAMS:
            pytest.fail(f"a test of the fast tier started {program(args)} ({args!r}): mark it @pytest.mark.slow, "
                        f"or test the project's logic without it", pytrace=False)
        super().__init__(args, *rest, **kwargs)


def pytest_configure(config):
    if leaves_out_slow(config.option.markexpr):
        config.add_cleanup(lambda popen=subprocess.Popen: setattr(subprocess, "Popen", popen))
        subprocess.Popen = FastTierPopen


@pytest.fixture(scope="session")
def first_run(tmp_path_factory):
    """The whole DAG run once on the tiny params and committed: (workspace, `dvc repro`'s
    output). Test modules copy it instead of computing it again."""
    path = make_workspace(tmp_path_factory.mktemp("first_run") / "ws")
    result = dvc(path, "repro")
    run(path, "git", "add", "-A")
    run(path, "git", "commit", "-qm", "first run")
    return path, result.stdout


@pytest.fixture
def rng():
    return np.random.default_rng(0)
