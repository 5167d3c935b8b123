"""Comparing runs the DVC way: metrics and plots across git branches, and `dvc exp`."""

import json

import pytest
from ruamel.yaml import YAML

from tests.workspace import copy_workspace, dvc, restore, run, stages_run, update_params

pytestmark = pytest.mark.slow  # the whole DAG through DVC


@pytest.fixture(scope="module")
def workspace(first_run, tmp_path_factory):
    return copy_workspace(first_run[0], tmp_path_factory.mktemp("experiments") / "ws")


def test_metrics_and_plots_diff_across_branches(workspace):
    run(workspace, "git", "checkout", "-q", "-b", "faster-head")
    update_params(workspace / "params.yaml", {"train_head": {"lr": 5.0e-3, "epochs": 2}})
    changed = dvc(workspace, "repro")
    assert stages_run(changed.stdout) == {"check", "train_head", "evaluate@head", "summary"}
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
    assert set(plots["Loss, train_head"][0]["revisions"]) == {"main", "workspace"}
    gradcam = plots["metrics/visualize/gradcam.png"]
    assert {rev for entry in gradcam for rev in entry["revisions"]} == {"main", "workspace"}
    run(workspace, "git", "checkout", "-q", "main")
    dvc(workspace, "checkout")  # main's models and data back from the cache, nothing recomputed
    assert "up to date" in dvc(workspace, "status").stdout


# The README's experiment grid through `dvc exp run --queue` and `dvc exp show`: in
# test_shared_experiments.py, which runs it once for both.


def test_exp_run_set_float_in_every_notation_on_every_training_stage(workspace):
    rates = {"scratch": "5e-5", "scratch_augmented": "1e-05", "train_head": "0.00003",
             "features_augmented": "5e-5", "finetune": "2e-05", "mnist": "0.00002"}
    result = dvc(workspace, "exp", "run",
                 *[arg for stage, rate in rates.items() for arg in ("-S", f"{stage}.lr={rate}")],
                 *rates)  # the training stages as targets: what they log is the point, not what follows
    assert set(rates) <= stages_run(result.stdout)
    for stage, rate in rates.items():
        logged = YAML(typ="safe", pure=True).load((workspace / f"dvclive/{stage}/params.yaml").read_text())
        assert isinstance(logged["lr"], float) and logged["lr"] == float(rate)
    bad = dvc(workspace, "exp", "run", "-S", "train_head.lr=fast", "-S", "train_head.epochs=1.5", "train_head",
              check=False)
    assert bad.returncode != 0 and "Traceback" not in bad.stdout + bad.stderr
    error = [line for line in (bad.stdout + bad.stderr).splitlines() if line.startswith("error: params.yaml")]
    assert len(error) == 1 and "train_head.lr: should be a valid number (got 'fast')" in error[0]
    assert "train_head.epochs: should be a valid integer (got 1.5)" in error[0]
    run(workspace, "git", "checkout", "params.yaml")


def test_the_same_configuration_twice_diffs_no_metric(workspace):
    restore(workspace)  # the last commit's run, whatever the tests before left
    forced = dvc(workspace, "repro", "--force", "--single-item", "train_head", "scratch")
    assert stages_run(forced.stdout) == {"train_head", "scratch"}
    dvc(workspace, "repro")  # what follows them, where their outputs' bytes changed
    assert json.loads(dvc(workspace, "metrics", "diff", "--json").stdout) == {}
    changed = run(workspace, "git", "diff", "--name-only").stdout.split()
    assert "dvclive/train_head/timing.json" in changed  # the wall times moved, outside the metrics
    restore(workspace)
