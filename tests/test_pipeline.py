"""The whole DAG through DVC, in a throwaway git + DVC workspace with tiny params."""

import json

import numpy as np
import pytest

from tests.conftest import dvc, make_workspace, run, stages_run, update_params

ALL_STAGES = {"sample", "split", "features", "train_head", "finetune", "evaluate"}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    path = make_workspace(tmp_path_factory.mktemp("pipeline") / "ws")
    first = dvc(path, "repro")
    assert stages_run(first.stdout) == ALL_STAGES
    run(path, "git", "add", "-A")
    run(path, "git", "commit", "-qm", "first run")
    return path


def test_every_output_exists_with_the_right_shape(workspace):
    for split, count in (("train", 16), ("validation", 8), ("test", 8)):
        features = np.load(workspace / f"data/features/{split}_features.npy", mmap_mode="r")
        labels = np.load(workspace / f"data/features/{split}_labels.npy")
        assert features.shape == (count, 1, 1, 512) and features.dtype == np.float32
        assert labels.tolist() == [0.0] * (count // 2) + [1.0] * (count // 2)
        assert len(list((workspace / "data/split" / split / "cats").glob("cat.*.jpg"))) == count // 2
    assert (workspace / "models/head.keras").is_file() and (workspace / "models/finetuned.keras").is_file()
    metrics = json.loads((workspace / "metrics/evaluate.json").read_text())
    assert set(metrics) == {"head", "finetuned"}
    for model in metrics.values():
        assert 0 <= model["accuracy"] <= 1 and 0 <= model["roc_auc"] <= 1 and model["loss"] > 0
        assert sum(model["confusion"].values()) == 8
    data = json.loads((workspace / "metrics/data.json").read_text())
    assert data["counts"]["train"] == {"cats": 8, "dogs": 8}
    for stage in ("train_head", "finetune"):
        steps = (workspace / f"dvclive/{stage}/plots/metrics/eval/loss.tsv").read_text().splitlines()
        assert {"step", "loss"} <= set(steps[0].split("\t")) and len(steps) == 2  # header + 1 epoch
    roc = json.loads((workspace / "metrics/eval/roc/finetuned.json").read_text())["roc"]
    assert roc[0]["fpr"] == 0 and roc[-1]["tpr"] == 1


def test_metrics_and_plots_are_visible_to_dvc(workspace):
    shown = json.loads(dvc(workspace, "metrics", "show", "--json").stdout)
    files = next(iter(shown.values()))["data"]
    assert files["metrics/evaluate.json"]["data"]["finetuned"]["accuracy"] >= 0
    plots = dvc(workspace, "plots", "show", "--json").stdout
    for name in ("metrics/eval/confusion/head.json", "ROC (test set)", "Loss (finetune)"):
        assert name in plots


def test_nothing_reruns_after_a_full_run(workspace):
    again = dvc(workspace, "repro")
    assert stages_run(again.stdout) == set()
    assert "up to date" in again.stdout


def test_head_param_reruns_head_finetune_evaluate_only(workspace):
    update_params(workspace / "params.yaml", {"train_head": {"lr": 1.0e-4}})
    changed = dvc(workspace, "repro")
    assert stages_run(changed.stdout) == {"train_head", "finetune", "evaluate"}
    run(workspace, "git", "checkout", "params.yaml")
    dvc(workspace, "repro")


def test_image_size_reruns_features_and_below(workspace):
    update_params(workspace / "params.yaml", {"image": {"size": 48}})
    changed = dvc(workspace, "repro")
    assert stages_run(changed.stdout) == {"features", "train_head", "finetune", "evaluate"}
    assert np.load(workspace / "data/features/train_features.npy").shape == (16, 1, 1, 512)


def test_split_param_reruns_split_not_sample(workspace):
    update_params(workspace / "params.yaml", {"split": {"train": 6}})
    changed = dvc(workspace, "repro", "split")
    assert stages_run(changed.stdout) == {"split"}
    assert len(list((workspace / "data/split/train/dogs").iterdir())) == 6
    assert stages_run(dvc(workspace, "repro", "split").stdout) == set()


def test_stage_error_is_one_line(workspace):
    update_params(workspace / "params.yaml", {"data": {"archive": "data/raw/missing.zip"}})
    result = run(workspace, "python", "-m", "stages.split", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "data/raw/missing.zip not found" in result.stderr and "kaggle competitions download" in result.stderr
