"""Experiments across machines, DVC's way: two clones stand for two machines, a bare git
repository and a DVC remote (a local folder) for the team's. One runs a queued grid and
`dvc exp push`es it; the other `dvc exp pull`s and sees its results without running them
(docs/scaling-out.md)."""

import json

import pytest
from ruamel.yaml import YAML

from tests.workspace import copy_workspace, dvc, run

pytestmark = pytest.mark.slow  # the DAG through DVC


def experiments(workspace):
    """{train_head.lr: (experiment name, eval accuracy)} of what `dvc exp show` lists (lr as
    a number: DVC writes 1e-05 and 5e-05 into params.yaml, numbers in YAML 1.2)."""
    shown = json.loads(dvc(workspace, "exp", "show", "--json").stdout)
    found = {}
    for rev in shown:
        for branch in rev.get("experiments") or []:
            for exp in branch["revs"]:
                data = exp["data"]
                lr = data["params"]["params.yaml"]["data"]["train_head"]["lr"]
                metrics = data["metrics"]["dvclive/train_head/metrics.json"]["data"]
                found[lr] = (exp.get("name") or branch.get("name"), metrics["eval"]["accuracy"])
    return found


def test_a_grid_run_on_one_machine_shows_and_checks_out_on_another(first_run, tmp_path):
    origin, storage = tmp_path / "origin.git", tmp_path / "dvc-storage"
    run(tmp_path, "git", "init", "-q", "--bare", str(origin))
    first = copy_workspace(first_run[0], tmp_path / "first")
    dvc(first, "remote", "add", "-d", "team", str(storage))
    run(first, "git", "add", ".dvc/config")
    run(first, "git", "commit", "-qm", "the team's DVC remote")
    run(first, "git", "remote", "add", "origin", str(origin))
    run(first, "git", "push", "-q", "origin", "main")
    dvc(first, "push")

    # The README's grid, queued and run, as `dvc exp show` lists it.
    queued = dvc(first, "exp", "run", "--queue", "-S", "train_head.lr=1e-5,2e-5,5e-5", "train_head")
    assert queued.stdout.count("Queued experiment") == 3
    dvc(first, "exp", "run", "--run-all", "--jobs", "1")
    ran = experiments(first)
    assert sorted(ran) == [1e-5, 2e-5, 5e-5]
    assert all(0 <= accuracy <= 1 for _, accuracy in ran.values())
    dvc(first, "exp", "push", "origin", "--rev", "HEAD")  # the git refs, and the outputs to the DVC remote

    second = tmp_path / "second"
    run(tmp_path, "git", "clone", "-q", "-b", "main", str(origin), str(second))
    run(second, "git", "config", "user.email", "test@example.com")
    run(second, "git", "config", "user.name", "test")
    assert experiments(second) == {}
    dvc(second, "exp", "pull", "origin", "--rev", "HEAD")
    assert experiments(second) == ran  # the same names and metrics, nothing run here
    assert not (second / "models/head.keras").exists()

    name = ran[5e-5][0]
    dvc(second, "exp", "apply", name)
    dvc(second, "pull", "train_head")  # the experiment's model, from the team's remote
    lock = YAML(typ="safe").load((second / "dvc.lock").read_text())
    assert lock["stages"]["train_head"]["params"]["params.yaml"]["train_head"]["lr"] == 5e-5
    assert (second / "models/head.keras").is_file()
    status = dvc(second, "status", "train_head").stdout
    assert "up to date" in status, status
