"""Comparing runs the DVC way: metrics and plots across git branches, and `dvc exp`."""

import json

import pytest

from tests.conftest import dvc, make_workspace, run, stages_run, update_params


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    path = make_workspace(tmp_path_factory.mktemp("experiments") / "ws")
    dvc(path, "repro")
    run(path, "git", "add", "-A")
    run(path, "git", "commit", "-qm", "baseline run")
    return path


def test_metrics_and_plots_diff_across_branches(workspace):
    run(workspace, "git", "checkout", "-q", "-b", "faster-head")
    update_params(workspace / "params.yaml", {"train_head": {"lr": 5.0e-3, "epochs": 2}})
    changed = dvc(workspace, "repro")
    assert stages_run(changed.stdout) == {"train_head", "finetune", "evaluate", "curves", "visualize"}
    run(workspace, "git", "add", "-A")
    run(workspace, "git", "commit", "-qm", "faster head")

    params = json.loads(dvc(workspace, "params", "diff", "main", "--json").stdout)
    change = params["params.yaml"]["train_head.lr"]
    assert (change["old"], change["new"]) == (2.0e-5, 5.0e-3)
    metrics = json.loads(dvc(workspace, "metrics", "diff", "main", "--json").stdout)
    head_metrics = metrics["metrics/evaluate.json"]
    assert "head.loss" in head_metrics and head_metrics["head.loss"]["old"] != head_metrics["head.loss"]["new"]
    assert "dvclive/train_head/metrics.json" in metrics  # the last epoch's training figures changed too

    plots = json.loads(dvc(workspace, "plots", "diff", "main", "--json").stdout)["data"]
    declared = json.loads(dvc(workspace, "plots", "show", "--json").stdout)["data"]
    assert set(plots) == set(declared) and len(plots) >= 30
    assert set(plots["Loss (train_head)"][0]["revisions"]) == {"main", "workspace"}
    gradcam = plots["metrics/visualize/gradcam.png"]
    assert {rev for entry in gradcam for rev in entry["revisions"]} == {"main", "workspace"}
    run(workspace, "git", "checkout", "-q", "main")
    dvc(workspace, "checkout")  # main's models and data back from the cache, nothing recomputed
    assert "up to date" in dvc(workspace, "status").stdout


def test_experiment_grid_shows_in_exp_show(workspace):
    queued = dvc(workspace, "exp", "run", "--queue", "-S", "mnist.epochs=1,2", "-S", "mnist.lr=1e-3")
    assert queued.stdout.count("Queued experiment") == 2
    dvc(workspace, "exp", "run", "--run-all", "--jobs", "1")
    shown = json.loads(dvc(workspace, "exp", "show", "--json").stdout)
    experiments = [exp for rev in shown for branch in (rev.get("experiments") or []) for exp in branch["revs"]]
    epochs = sorted(exp["data"]["params"]["params.yaml"]["data"]["mnist"]["epochs"] for exp in experiments)
    assert epochs == [1, 2]
    for exp in experiments:
        assert 0 <= exp["data"]["metrics"]["metrics/mnist.json"]["data"]["accuracy"] <= 1
    dvc(workspace, "exp", "run", "-S", "mnist.epochs=2", "mnist")
    assert json.loads((workspace / "metrics/mnist.json").read_text())["accuracy"] >= 0
