"""Nothing lost under DVC: a bad value, a missing input file or an interruption during
`dvc repro`, `dvc exp run` or a make target leaves the previous outputs as they were
(docs/real-data.md#what-survives-what)."""

import glob
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from dogs_vs_cats.check import check, input_problems, PASSED, produced
from dogs_vs_cats.config import load_params
from dogs_vs_cats.errors import StageError
from tests.workspace import (
    BIN,
    copy_project,
    copy_workspace,
    dvc,
    environment,
    REPO,
    run,
    stages_run,
    update_params,
    write_mnist_npz,
)

KEPT = ("models/head.keras", "dvclive/train_head/metrics.json", "dvclive/train_head/plots/metrics/train/loss.tsv",
        "submissions/submission.csv", "data/split/train/cats/cat.0.jpg", "metrics/data.json",
        "models/finetuned/saved_model.pb")


def snapshot(ws):
    return {path: (ws / path).read_bytes() for path in KEPT}


@pytest.fixture
def ws(first_run, tmp_path):
    """A copy of the session's workspace, where the whole DAG (train_head, submission and
    export among it) ran through DVC, committed."""
    return copy_workspace(first_run[0], tmp_path / "ws")


# --- the check stage, alone ------------------------------------------------------------------

def test_check_names_bad_params_and_unusable_files(tmp_path, monkeypatch):
    project = copy_project(tmp_path / "project", {"train_head": {"lr": -1}})
    monkeypatch.chdir(project)
    with pytest.raises(StageError, match=r"train_head.lr: should be greater than 0 \(got -1\)"):
        check()
    (project / "folder.zip").mkdir()
    os.mkfifo(project / "fifo.npz")
    update_params(project / "params.yaml", {"train_head": {"lr": 0.1}, "data": {"archive": "missing.zip"},
                                            "submission": {"archive": "folder.zip"},
                                            "base": {"weights": "none.h5"}, "mnist": {"npz": "fifo.npz"}})
    problems = input_problems(load_params(), produced("dvc.yaml"))
    assert problems == [
        "data.archive missing.zip not found: " + problems[0].split(": ", 1)[1],
        "submission.archive folder.zip is a folder, not a zip archive: " + problems[1].split(": ", 1)[1],
        "base.weights none.h5 not found: use imagenet, none, or the path of a VGG16 notop weights file "
        "(.weights.h5 or .h5)",
        "mnist.npz fifo.npz is not a regular file (a FIFO or a device), not an .npz file: "
        + problems[3].split(": ", 1)[1]]
    assert "kaggle competitions download" in problems[0]


def test_check_accepts_what_a_stage_writes(tmp_path, monkeypatch):
    project = copy_project(tmp_path)  # data/sample/*.zip do not exist yet: `sample` writes them
    write_mnist_npz(project / "mnist_small.npz")
    monkeypatch.chdir(project)
    check()
    result = run(project, sys.executable, "-m", "stages.check", "data/checked.txt")
    assert (project / "data/checked.txt").read_text() == PASSED and result.returncode == 0


# --- through DVC --------------------------------------------------------------------------------

@pytest.mark.slow  # through DVC
def test_bad_value_in_dvc_exp_run_keeps_the_outputs_and_says_how_to_undo(ws):
    before = snapshot(ws)
    result = dvc(ws, "exp", "run", "-S", "train_head.lr=-1", "train_head", check=False)
    assert result.returncode != 0
    assert stages_run(result.stdout) == {"check"}
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "train_head.lr: should be greater than 0 (got -1)" in errors[0]
    assert "git checkout params.yaml" in errors[0]
    assert snapshot(ws) == before


@pytest.mark.slow  # through DVC
def test_a_valid_change_reruns_check_and_the_stage_only(ws):
    update_params(ws / "params.yaml", {"submission": {"clip": 0.01}})
    result = dvc(ws, "repro", "train_head", "submission", "export")
    assert stages_run(result.stdout) == {"check", "submission"}


@pytest.mark.slow  # through DVC
def test_missing_submission_archive_through_make_says_what_to_do(ws):
    before = snapshot(ws)
    (ws / "Makefile").write_text((REPO / "Makefile").read_text())
    venv = Path(sys.prefix)
    result = run(ws, "make", f"VENV={venv}", "-o", f"{venv}/.installed", "submission", "SUBMISSION=missing.zip",
                 check=False)
    assert result.returncode != 0
    assert "error: submission.archive missing.zip not found: download the competition" in result.stderr
    assert snapshot(ws) == before


@pytest.mark.slow  # through DVC
def test_missing_data_archive_keeps_the_split(ws):
    before = snapshot(ws)
    update_params(ws / "params.yaml", {"data": {"archive": "data/raw/missing.zip"}})
    result = dvc(ws, "repro", "split", check=False)
    assert result.returncode != 0 and "error: data.archive data/raw/missing.zip not found" in result.stderr
    assert snapshot(ws) == before


@pytest.mark.slow  # through DVC
def test_a_diverging_training_under_dvc_repro_keeps_the_model_and_its_log(ws):
    def kept():
        """The outputs, train_head's whole log, and dvc.lock's train_head entry (the previous
        model's; `check`'s entry takes the new params)."""
        logs = {path: path.read_bytes() for path in (ws / "dvclive/train_head").rglob("*") if path.is_file()}
        lock = YAML(typ="safe", pure=True).load((ws / "dvc.lock").read_text())["stages"]["train_head"]
        return snapshot(ws), logs, lock
    before = kept()
    update_params(ws / "params.yaml", {"train_head": {"lr": 1e30}})
    result = dvc(ws, "repro", "train_head", check=False)
    assert result.returncode != 0 and stages_run(result.stdout) == {"check", "train_head"}, result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert re.fullmatch(r"error: train_head: the (validation )?loss became (nan|-?inf) in epoch \d+, so training "
                        r"stopped and the previous model was kept: the learning rate 1e\+30 is likely too high; "
                        r"lower it in params.yaml", errors[0]), errors[0]
    assert kept() == before
    assert not glob.glob(str(ws / "**/.~dogs-vs-cats-*"), recursive=True)


def start_and_signal(ws, command, started, signum):
    # SIGINT at its default, as in a terminal: a shell's background job inherits it ignored.
    process = subprocess.Popen([str(BIN / "dvc"), *command], cwd=ws, env=environment(), start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not glob.glob(str(ws / started)):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)  # the export writes its folder for a second or two: look often
    os.killpg(process.pid, signum)  # as Ctrl-C in a terminal and `timeout` do: the whole group
    output, _ = process.communicate(timeout=600)  # a loaded machine: DVC and the stage clean up first
    # DVC may die first on SIGTERM: wait for the stage, in the same process group, to
    # finish its clean-up (a restore from the cache can take seconds on a loaded machine).
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    return output


@pytest.mark.slow  # through DVC
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_training_under_dvc_repro_keeps_model_and_logs(ws, signum):
    before = snapshot(ws)
    update_params(ws / "params.yaml", {"train_head": {"epochs": 100000}})
    output = start_and_signal(ws, ["repro", "train_head"],
                              "dvclive/.~dogs-vs-cats-tmp-*-train_head/plots/metrics/train/loss.tsv", signum)
    assert "Running stage 'train_head'" in output
    assert snapshot(ws) == before
    assert not glob.glob(str(ws / "**/.~dogs-vs-cats-*"), recursive=True)


@pytest.mark.slow  # through DVC
def test_sigterm_during_dvc_repro_export_restores_the_savedmodel(ws):
    before = snapshot(ws)
    output = start_and_signal(ws, ["repro", "-s", "-f", "export"], "models/.~dogs-vs-cats-tmp-*-finetuned",
                              signal.SIGTERM)
    assert "Running stage 'export'" in output
    assert snapshot(ws) == before
    run(ws, "git", "checkout", "--", "params.yaml")
    assert "export" not in dvc(ws, "status").stdout
