"""The fixtures the test modules share: the first run of the whole DAG, a seeded generator.
Helpers live in tests/workspace.py (workspaces, shared with bench/) and tests/helpers.py."""

import numpy as np
import pytest

from tests.workspace import dvc, make_workspace, run


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
