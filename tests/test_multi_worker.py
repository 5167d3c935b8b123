"""Past one machine: `distribute: multi_worker` on TensorFlow's MultiWorkerMirroredStrategy,
two worker processes on the loopback standing for two machines, each running the stage's
own cmd with its TF_CONFIG (docs/scaling-out.md)."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

from bench.multi_worker import free_ports
from dogs_vs_cats.augment import augmentation
from dogs_vs_cats.batches import ArrayBatches
from dogs_vs_cats.config import load_params
from dogs_vs_cats.distribute import cluster_spec, sweep_worker_folders, training_scope, WORKER_FOLDER
from dogs_vs_cats.errors import StageError
from dogs_vs_cats.nets import dense_head
from dogs_vs_cats.training import Phase, phase_lr, train
from tests.helpers import section
from tests.workspace import copy_workspace, dvc, environment, REPO, run, stage_command, update_params

WORKER_TIMEOUT = 300  # seconds: a worker whose peer died waits for it; no test hangs on that


def tf_configs(count):
    workers = [f"127.0.0.1:{port}" for port in free_ports(count)]
    return [json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
            for index in range(count)]


def start_workers(commands, cwds, envs=None, configs=None):
    """Each command in its folder with its TF_CONFIG (and `envs`); the processes."""
    processes = []
    for command, cwd, config, env in zip(commands, cwds, configs or tf_configs(len(commands)),
                                         envs or [{}] * len(commands)):
        env = {**environment(), "TF_CONFIG": config, **env}
        processes.append(subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
    return processes


def finish(processes, timeout=WORKER_TIMEOUT):
    """(exit status, output) of each process; all killed once one outlives `timeout`."""
    results = []
    for process in processes:
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            output, _ = process.communicate()
        results.append((process.returncode, output))
    return results


def run_workers(commands, cwds):
    return finish(start_workers(commands, cwds))


RUN = [sys.executable, "-m", "tests.multi_worker_run", "out"]  # a tiny training run (tests/multi_worker_run.py)


def run_env(**settings):
    return {"RUN_SETTINGS": json.dumps(settings), "PYTHONPATH": str(REPO)}


def start_runs(folder, *settings, configs=None):
    """tests/multi_worker_run.py as workers (one per `settings`) in folder/w0, folder/w1, ..."""
    cwds = [folder / f"w{index}" for index in range(len(settings))]
    for cwd in cwds:
        cwd.mkdir(parents=True, exist_ok=True)
    return start_workers([RUN] * len(settings), cwds, [run_env(**one) for one in settings], configs), cwds


def one_process(folder, **settings):
    """The same run in one process (no TF_CONFIG): its folder."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {**environment(), **run_env(**settings)}
    env.pop("TF_CONFIG", None)
    result = subprocess.run(RUN, cwd=folder, env=env, capture_output=True, text=True, timeout=WORKER_TIMEOUT)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return folder


def report(folder):
    return json.loads((folder / "out/report.json").read_text())


def weights(folder):
    with np.load(folder / "out/weights.npz") as stored:
        return [stored[f"arr_{index}"] for index in range(len(stored.files))]


def wait_for(process, text, timeout=WORKER_TIMEOUT):
    """Read `process`'s output until a line holds `text`; what was read."""
    lines, started = [], time.monotonic()
    while time.monotonic() - started < timeout:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return "".join(lines)
    raise AssertionError(f"{text!r} never came:\n" + "".join(lines)[-3000:])


# --- without DVC: the rules and the training step in one process ---------------------------

def test_multi_worker_without_tf_config_is_one_line(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(StageError, match=r"^finetune.distribute is multi_worker but TF_CONFIG is not set: set "
                                         r"TF_CONFIG on every worker"):
        cluster_spec("finetune")
    for bad in ('{"cluster": {}}', "not json", '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", '
                                                '"index": 3}}'):
        monkeypatch.setenv("TF_CONFIG", bad)
        with pytest.raises(StageError, match="TF_CONFIG"):
            cluster_spec("finetune")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, '
                                    '"task": {"type": "worker", "index": 0}}')
    with pytest.raises(StageError, match=r"cluster has the jobs \['chief', 'worker'\]: only workers"):
        cluster_spec("finetune")


def test_the_schema_allows_multi_worker_where_it_works():
    section("train_head", distribute="multi_worker")
    section("finetune", distribute="multi_worker")
    with pytest.raises(StageError, match="scratch.distribute"):
        section("scratch", distribute="multi_worker")
    with pytest.raises(StageError, match="cache is true but distribute is multi_worker"):
        section("finetune", distribute="multi_worker", cache=True)
    with pytest.raises(StageError, match="views is 4 but distribute is multi_worker"):
        section("features_augmented", distribute="multi_worker", views=4)
    with pytest.raises(StageError, match=r"^params.yaml: train_head.precision is mixed_float16 but distribute is "
                                         r"multi_worker.*: set precision to float32"):
        section("train_head", distribute="multi_worker", precision="mixed_float16")
    section("finetune", distribute="mirrored", precision="mixed_float16")


def tf_config(workers, index=0):
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def test_every_tf_config_mistake_is_one_line_naming_it(monkeypatch):
    for workers, index, expected in (
            ("127.0.0.1:1", 0, r"cluster.worker is '127.0.0.1:1', not a list of host:port"),
            (["127.0.0.1:1", "127.0.0.1:x"], 0, r"worker 1 is '127.0.0.1:x', not host:port"),
            (["127.0.0.1:1", "127.0.0.1:70000"], 0, r"worker 1 is '127.0.0.1:70000', not host:port"),
            (["127.0.0.1"], 0, r"worker 0 is '127.0.0.1', not host:port"),
            (["127.0.0.1:1", "127.0.0.1:1"], 0, r"lists the worker 127.0.0.1:1 twice"),
            (["127.0.0.1:1", "127.0.0.1:2"], 2, r"the task must be .* with N from 0 to 1, a different N"),
            (["127.0.0.1:1", "127.0.0.1:2"], "0", r"the task must be")):
        monkeypatch.setenv("TF_CONFIG", tf_config(workers, index))
        with pytest.raises(StageError, match=r"^finetune.distribute is multi_worker but TF_CONFIG's .*" + expected):
            cluster_spec("finetune")
    with socket.socket() as taken:  # another program, or a worker started here with the same index
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("TF_CONFIG", tf_config([f"127.0.0.1:{port}", "127.0.0.1:2"]))
        with pytest.raises(StageError, match=rf"^finetune: port {port} of TF_CONFIG's worker 0 \(127.0.0.1:{port}\) "
                                             r"is in use .*: another worker started here with index 0"):
            cluster_spec("finetune")


def test_tf_config_where_distribute_is_not_multi_worker_is_one_line(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", tf_config(["127.0.0.1:1", "127.0.0.1:2"]))
    for distribute in ("none", "mirrored"):
        with pytest.raises(StageError, match=rf"^TF_CONFIG is set but finetune.distribute is {distribute}: run every "
                                             r"worker with `-S finetune.distribute=multi_worker`"):
            with training_scope("finetune", {"distribute": distribute}):
                pass


def test_what_killed_workers_left_in_the_temporary_folder_is_swept():
    finished = subprocess.Popen([sys.executable, "-c", ""])
    finished.wait()  # a pid no process has now
    dead = Path(tempfile.mkdtemp(prefix=f"{WORKER_FOLDER}{finished.pid}-"))
    mine = Path(tempfile.mkdtemp(prefix=f"{WORKER_FOLDER}{os.getpid()}-"))
    (dead / "model.keras").write_bytes(b"half")
    try:
        sweep_worker_folders()
        assert not dead.exists() and mine.is_dir()
    finally:
        shutil.rmtree(mine, ignore_errors=True)
        shutil.rmtree(dead, ignore_errors=True)


def test_one_process_killed_resumes_from_its_last_epoch_to_the_same_model(tmp_path):
    """`dvc repro` killed in epoch 3 of 4 goes on from epoch 3: the same weights as a run
    that was never stopped, and a log of every epoch."""
    settings = {"epochs": 4, "dropout": 0.5, "augment": True}
    whole = one_process(tmp_path / "whole", **settings)
    (tmp_path / "stopped").mkdir()
    env = {**environment(), **run_env(**settings, pause=0.5)}
    env.pop("TF_CONFIG", None)
    process = subprocess.Popen(RUN, cwd=tmp_path / "stopped", env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    wait_for(process, "epoch 2:")
    time.sleep(1.0)  # the checkpoint of epoch 2 is written; epoch 3 reads its batches
    process.kill()
    process.communicate()
    checkpoint = tmp_path / "stopped/out/.dogs-vs-cats-resume-model.keras"
    assert json.loads((checkpoint / "state.json").read_text())["epochs"] == 2
    env = {**environment(), **run_env(**settings)}
    env.pop("TF_CONFIG", None)
    resumed = subprocess.run(RUN, cwd=tmp_path / "stopped", env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    assert "resuming after epoch 2" in resumed.stdout and "epoch 1:" not in resumed.stdout
    assert not checkpoint.exists()
    for after, before in zip(weights(tmp_path / "stopped"), weights(whole)):
        np.testing.assert_array_equal(after, before)
    logged = np.loadtxt(tmp_path / "stopped/out/logs/plots/metrics/train/loss.tsv", skiprows=1)
    expected = np.loadtxt(whole / "out/logs/plots/metrics/train/loss.tsv", skiprows=1)
    np.testing.assert_array_equal(logged[:, -2:], expected[:, -2:])  # step and loss of every epoch


class FollowEpochs(keras.callbacks.Callback):
    """What train() did before its loop was its own: tell the batches which epoch fit() starts."""

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.epoch = epoch


def test_one_loop_trains_to_fits_weights_with_augmentation_and_dropout(tmp_path, monkeypatch, rng):
    """The loop every stage trains with, in one process, gives the weights Keras' fit() gives
    on the same seeds and batches, to the bit, with augmentation and dropout on: the
    figures measured with fit() stay valid."""
    x = rng.integers(0, 256, (24, 8, 8, 3)).astype("uint8")
    y = (x[:, :4].mean(axis=(1, 2, 3)) > x[:, 4:].mean(axis=(1, 2, 3))).astype("float32")
    augment = {"rotation": 40, "width_shift": 0.2, "height_shift": 0.2, "shear": 0.2, "zoom": 0.2,
               "horizontal_flip": True}
    phases = [Phase(2, 1e-3), Phase(2, 1e-4)]
    monkeypatch.chdir(tmp_path)
    keras.utils.set_random_seed(3)
    model = dense_head((8, 8, 3), 16, 0.5)
    train("train_head", model, {"x": ArrayBatches(x, y, 5, seed=3)}, phases,
          {"seed": 3, "lr_schedule": "cosine", "precision": "float32"}, augment=augment, output=tmp_path / "m.keras")
    keras.utils.set_random_seed(3)
    fitted = dense_head((8, 8, 3), 16, 0.5)
    trainer = keras.Sequential([keras.Input((8, 8, 3)), augmentation(augment, 3), fitted])
    batches, done = ArrayBatches(x, y, 5, seed=3), 0
    for phase in phases:
        trainer.compile(optimizer=keras.optimizers.RMSprop(learning_rate=phase.lr), loss="binary_crossentropy",
                        metrics=["accuracy"])
        rate = keras.callbacks.LearningRateScheduler(
            lambda epoch, lr, first=done, phase=phase: phase_lr("cosine", phase.lr, epoch - first, phase.epochs))
        batches.epoch = done  # fit() reads the first batches before its first epoch starts
        trainer.fit(batches, shuffle=False, initial_epoch=done, epochs=done + phase.epochs, verbose=0,
                    callbacks=[rate, FollowEpochs(batches)])
        done += phase.epochs
    assert len(model.get_weights()) == 4
    for ours, keras_fit in zip(model.get_weights(), fitted.get_weights()):
        np.testing.assert_array_equal(ours, keras_fit)


# --- two workers on the loopback ------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(first_run):
    """The session's workspace, where the whole DAG (features, head and split among it) ran
    through DVC, committed: tiny images, base.weights none. Tests work on copies."""
    return first_run[0]


def tracked_files(ws):
    """What the pipeline tracks in a workspace, with each file's bytes."""
    return {str(path.relative_to(ws)): path.read_bytes() for folder in ("models", "dvclive", "metrics")
            for path in sorted((ws / folder).rglob("*")) if path.is_file()}


def stage_weights(path):
    return keras.models.load_model(path).get_weights()


NO_AUGMENTATION = {"rotation": 0, "width_shift": 0, "height_shift": 0, "shear": 0, "zoom": 0,
                   "horizontal_flip": False}
CASES = {  # stage: params that make its training deterministic, so one process and two agree
    "train_head": {"train_head": {"dropout": 0, "epochs": 2, "batch_size": 8}},
    "finetune": {"train_head": {"dropout": 0}, "augment": NO_AUGMENTATION,
                 "finetune": {"start_from": "head", "epochs": 2, "batch_size": 8, "cache": False}},
}


@pytest.mark.slow
@pytest.mark.parametrize("stage", CASES)
def test_two_workers_train_to_one_process_weights(trained, tmp_path, stage):
    one, chief, other = (copy_workspace(trained, tmp_path / name) for name in ("one", "chief", "other"))
    update_params(one / "params.yaml", CASES[stage])
    for ws in (chief, other):
        update_params(ws / "params.yaml", CASES[stage])
        update_params(ws / "params.yaml", {stage: {"distribute": "multi_worker"}})
    if stage == "finetune":  # its head: train_head without dropout, as the one-process run has it
        for ws in (one, chief, other):
            dvc(ws, "repro", "train_head")
    command = stage_command(stage, one / "params.yaml")
    run(one, *command)
    before = tracked_files(other)
    results = run_workers([command, command], [chief, other])
    for status, output in results:
        assert status == 0, output[-3000:]
    assert "MultiWorkerMirroredStrategy over 2 replica(s) on 2 workers; this is worker 0" in results[0][1]
    assert "this is worker 1 (writes nothing the pipeline tracks)" in results[1][1]
    model = {"train_head": "models/head.keras", "finetune": "models/finetuned.keras"}[stage]
    for single, double in zip(stage_weights(one / model), stage_weights(chief / model)):
        np.testing.assert_allclose(single, double, rtol=1e-4, atol=1e-5)
    assert tracked_files(other) == before  # the other worker wrote nothing the pipeline tracks
    dvc(chief, "commit", "--force", stage)
    assert "up to date" in dvc(chief, "status", stage).stdout


@pytest.mark.slow
def test_two_workers_with_dropout_learn(trained, tmp_path):
    chief, other = (copy_workspace(trained, tmp_path / name) for name in ("chief", "other"))
    for ws in (chief, other):
        update_params(ws / "params.yaml", {"train_head": {"distribute": "multi_worker", "dropout": 0.5,
                                                          "epochs": 4, "lr": 1e-3, "batch_size": 4}})
    command = stage_command("train_head", chief / "params.yaml")
    for status, output in run_workers([command, command], [chief, other]):
        assert status == 0, output[-3000:]
    losses = np.loadtxt(chief / "dvclive/train_head/plots/metrics/train/loss.tsv", skiprows=1)[:, 1]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert load_params(chief / "params.yaml").train_head.distribute == "multi_worker"


FIT_UNDER_MULTI_WORKER = textwrap.dedent("""
    import numpy as np, keras, tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer="rmsprop", loss="binary_crossentropy")
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    model.fit(x, (x[:, 0] > 0).astype("float32"), batch_size=8, epochs=1, verbose=0)
""")


@pytest.mark.slow
@pytest.mark.xfail(strict=True, raises=AssertionError, reason="Keras 3's fit() under MultiWorkerMirroredStrategy "
                                       "(keras-team/keras#20585): when this passes, fit() can replace the step")
def test_plain_fit_under_multi_worker_still_fails(tmp_path):
    command = [sys.executable, "-c", FIT_UNDER_MULTI_WORKER]
    results = run_workers([command, command], [tmp_path, tmp_path])
    for status, output in results:  # any other failure is an error, not the expected one
        if status != 0 and "Attempt to convert a value (PerReplica" not in output:
            raise RuntimeError(output[-2000:])
    assert all(status == 0 for status, _ in results)


# --- two workers of a tiny run, without DVC (tests/multi_worker_run.py) ----------------------

def own_rows(read, worker, workers=2, count=24, batch_size=5, seed=5, epochs=1):
    """The rows worker `worker` should read: its share of every global batch of every epoch."""
    expected = []
    for epoch in range(epochs):
        order = np.random.default_rng((seed, epoch)).permutation(count)
        expected += [order[start:start + batch_size][worker::workers].tolist() for start in range(0, count, batch_size)]
    return expected


@pytest.mark.slow
def test_two_workers_share_the_work_and_draw_their_own_numbers(tmp_path):
    """Each worker reads only its rows of every global batch and predicts only its share of
    the validation batches; the summed figures equal one process's to the bit. Worker 0
    draws the augmentation and dropout numbers one process draws, worker 1 others."""
    settings = {"epochs": 1, "dropout": 0.5, "augment": True}
    processes, (chief, other) = start_runs(tmp_path, settings, settings)
    pids = [process.pid for process in processes]
    for status, output in finish(processes):
        assert status == 0, output[-3000:]
    one = one_process(tmp_path / "one", **settings)
    assert report(chief)["validation"] == report(other)["validation"] == report(one)["validation"]
    assert report(one)["read"] == own_rows(None, 0, workers=1)
    assert report(chief)["read"] == own_rows(None, 0) and report(other)["read"] == own_rows(None, 1)
    assert report(chief)["draws"] == report(one)["draws"] != report(other)["draws"]
    logged = yaml.safe_load((chief / "out/logs/params.yaml").read_text())
    assert logged["worker_seeds"][0] == 5 and logged["worker_seeds"][1] != 5
    assert sorted(path.name for path in (other / "out").iterdir()) == ["report.json", "weights.npz"]
    assert not [path for pid in pids for path in Path(tempfile.gettempdir()).glob(f"{WORKER_FOLDER}{pid}-*")]


@pytest.mark.slow
@pytest.mark.parametrize("change, expected", [
    ({"params": {"lr": 0.02}}, r"train_head: worker 1's train_head.lr differs from worker 0's; this worker, \d, "
                               r"has 0.0\d: run every worker with the same params.yaml"),
    ({"photos": 25}, r"train_head: worker 1's number of training photos differs from worker 0's; this worker, \d, "
                     r"has 2\d: every worker needs the same data")])
def test_workers_that_disagree_stop_with_one_line(tmp_path, change, expected):
    started = time.monotonic()
    results = finish(start_runs(tmp_path, {}, change)[0])
    assert time.monotonic() - started < 90  # the start of two processes, then at once
    for status, output in results:
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        assert status == 1 and len(errors) == 1 and re.search(expected, errors[0]), output[-3000:]
        assert "Traceback" not in output


@pytest.mark.slow
def test_a_lost_worker_stops_the_other_and_both_resume(tmp_path):
    """SIGTERM stops a worker as it stops one process; the chief notices within seconds and
    stops in one line; started again, both go on from the chief's last epoch to the model
    one process trains (nothing random: dropout off, no augmentation)."""
    settings = {"epochs": 4, "params": {"worker_timeout": 20}}
    processes, (chief, other) = start_runs(tmp_path, {**settings, "pause": 0.5}, {**settings, "pause": 0.5})
    wait_for(processes[0], "epoch 2:")
    time.sleep(1.0)
    processes[1].send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    (chief_status, chief_output), (other_status, other_output) = finish(processes)
    assert other_status == 143 and "terminated: nothing half-written was left" in other_output, other_output[-3000:]
    assert time.monotonic() - stopped < 60
    errors = [line for line in chief_output.splitlines() if line.startswith("error:")]
    assert chief_status == 1 and len(errors) == 1, chief_output[-3000:]
    assert re.match(r"error: train_head: lost contact with (worker 1|another worker), which .*: the run stopped; "
                    r"start every worker again and the chief resumes from its last finished epoch", errors[0])
    assert not (chief / "out/model.keras").exists()
    configs = tf_configs(2)
    results = finish(start_workers([RUN, RUN], [chief, other], [run_env(**settings)] * 2, configs))
    for status, output in results:
        assert status == 0, output[-3000:]
    assert re.search(r"resuming after epoch [23] from .*\.dogs-vs-cats-resume-model.keras", results[0][1])
    assert re.search(r"resuming after epoch [23] from the chief", results[1][1])
    assert not (chief / "out/.dogs-vs-cats-resume-model.keras").exists()
    one = one_process(tmp_path / "one", **settings)
    for resumed, single in zip(weights(chief), weights(one)):
        np.testing.assert_allclose(resumed, single, rtol=1e-4, atol=1e-5)
    logged = np.loadtxt(chief / "out/logs/plots/metrics/train/loss.tsv", skiprows=1)
    assert logged[:, -2].tolist() == [0, 1, 2, 3]  # the log goes on: one step per epoch


@pytest.mark.slow
def test_a_worker_that_never_comes_stops_the_chief_in_one_line(tmp_path):
    configs = tf_configs(2)
    started = time.monotonic()
    processes, _ = start_runs(tmp_path, {"params": {"worker_timeout": 10}}, configs=configs[:1])
    [(status, output)] = finish(processes)
    worker = json.loads(configs[1])["cluster"]["worker"][1]
    assert status == 1 and time.monotonic() - started < 60, output[-3000:]
    assert re.search(rf"^error: train_head: worker 1 \({worker}\) never came up within worker_timeout \(10 s\) of "
                     r"this worker's start \(worker 0\)", output, re.M), output[-3000:]
