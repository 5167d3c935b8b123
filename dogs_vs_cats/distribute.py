"""Where training runs: the tf.distribute strategy of a stage's `distribute` param and,
under `multi_worker`, the workers TF_CONFIG lists (TensorFlow's "Multi-worker training
with Keras" guide): checked before they start, agreeing before the first step, each with
its own random numbers and its own share of the work, stopped in one line when one is lost.

    none          TensorFlow's default strategy, one device
    mirrored      MirroredStrategy, one replica per local GPU (the CPU when there is none)
    multi_worker  MultiWorkerMirroredStrategy over the machines TF_CONFIG lists, each running
                  the stage's own cmd; worker 0, the chief, writes the outputs
"""

import contextlib
import faulthandler
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np

from dogs_vs_cats.batches import ValidationBatches
from dogs_vs_cats.errors import StageError
from dogs_vs_cats.outputs import alive

MULTI_WORKER_HELP = ("set TF_CONFIG on every worker before running the stage's cmd, e.g. TF_CONFIG="
                     "'{\"cluster\": {\"worker\": [\"host1:12345\", \"host2:12345\"]}, "
                     "\"task\": {\"type\": \"worker\", \"index\": 0}}' with index 0 on the chief, "
                     "1 on the next machine (docs/scaling-out.md)")
WORKER_FOLDER = "dogs-vs-cats-worker-"  # + pid + "-": a non-chief worker's log, removed at its end
ITEMS = 128  # numbers each worker puts forward to agree on (a fixed size: every worker sends the same shape)


def seed_everything(seed):
    keras.utils.set_random_seed(seed)


def _address(entry, position, where):
    """`host:port` of TF_CONFIG's worker list, checked: StageError naming the entry."""
    host, _, port = entry.rpartition(":") if isinstance(entry, str) else ("", "", "")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise StageError(f"{where} but TF_CONFIG's worker {position} is {entry!r}, not host:port with a port "
                         f"from 1 to 65535: {MULTI_WORKER_HELP}")
    return host.strip("[]"), int(port)


def cluster_spec(stage):
    """TF_CONFIG's workers and this process's index, checked: StageError saying what to set."""
    raw = os.environ.get("TF_CONFIG", "")
    where = f"{stage}.distribute is multi_worker"
    if not raw.strip():
        raise StageError(f"{where} but TF_CONFIG is not set: {MULTI_WORKER_HELP}")
    try:
        config = json.loads(raw)
        cluster, task = config["cluster"], config["task"]
        workers, index = cluster["worker"], task["index"]
    except (ValueError, KeyError, TypeError):
        raise StageError(f"{where} but TF_CONFIG is not a cluster of workers and a task: {MULTI_WORKER_HELP}") from None
    if set(cluster) != {"worker"}:
        raise StageError(f"{where} but TF_CONFIG's cluster has the jobs {sorted(cluster)}: only "
                         f"workers are supported (worker 0 is the chief): {MULTI_WORKER_HELP}")
    if not isinstance(workers, list) or not workers:
        raise StageError(f"{where} but TF_CONFIG's cluster.worker is {workers!r}, not a list of host:port "
                         f"(write [\"host1:12345\", \"host2:12345\"], brackets included): {MULTI_WORKER_HELP}")
    addresses = [_address(entry, position, where) for position, entry in enumerate(workers)]
    twice = next((entry for position, entry in enumerate(workers) if entry in workers[:position]), None)
    if twice:
        raise StageError(f"{where} but TF_CONFIG's cluster lists the worker {twice} twice: give each worker an "
                         f"address of its own: {MULTI_WORKER_HELP}")
    if task.get("type") != "worker" or isinstance(index, bool) or not isinstance(index, int) \
            or not 0 <= index < len(workers):
        raise StageError(f"{where} but TF_CONFIG's task is {task} for workers {workers}: the task must be "
                         f"{{\"type\": \"worker\", \"index\": N}} with N from 0 to {len(workers) - 1}, a different N "
                         f"on each machine: {MULTI_WORKER_HELP}")
    _check_port(stage, workers[index], addresses[index][1], index)
    return workers, index


def _check_port(stage, address, port, index):
    """This worker's port must be free: taken, TensorFlow's server fails in a traceback
    that names no port while the other workers wait."""
    with socket.socket(socket.AF_INET6 if ":" in address.rpartition(":")[0] else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC: a closed connection's port is free
        try:
            probe.bind(("", port))
        except OSError as e:
            raise StageError(f"{stage}: port {port} of TF_CONFIG's worker {index} ({address}) is in use ({e.strerror}) "
                             f"on this machine: another worker started here with index {index}, or another "
                             f"program; give each worker its own index and a free port") from None


def worker_seed(seed, index):
    """`seed` as worker `index` uses it: `seed` itself on worker 0 (so one process draws what
    it always did), one derived from it and the index elsewhere."""
    if not index:
        return seed
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def workers(strategy=None):
    """(how many workers, this one's index): (1, 0) outside multi_worker."""
    import tensorflow as tf
    strategy = strategy or tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 1, 0
    resolver = strategy.cluster_resolver
    return len(resolver.cluster_spec().as_dict()["worker"]), resolver.task_id


def is_chief(strategy=None):
    """Whether this process writes the outputs: always, but for workers 1.. under multi_worker."""
    return workers(strategy)[1] == 0


def reseed(model, strategy=None):
    """Give this worker random numbers of its own: every seed generator of `model` (dropout,
    augmentation) restarts from one derived from its seed and the worker's `worker_seed`.
    Nothing changes on worker 0. Under the strategy every worker's variables start from the
    chief's values, so without this each worker would draw the chief's numbers."""
    count, index = workers(strategy)
    if not index:
        return
    for variable in model.variables:
        if variable.path.endswith("seed_generator_state"):
            state = keras.ops.convert_to_numpy(variable)
            # the count of draws stays: a resumed worker goes on with its own stream
            variable.assign(np.array([worker_seed(int(state[0]), index), state[1]], dtype=state.dtype))


def all_sum(array, strategy=None):
    """The sum over the workers of `array` (float64): exact where each position is filled
    by one worker and zero on the others, so every worker gets every worker's numbers."""
    import tensorflow as tf
    strategy = strategy or tf.distribute.get_strategy()
    array = np.asarray(array, np.float64)
    if workers(strategy)[0] == 1:
        return array
    first = []

    def local(context):  # one replica of each worker brings the worker's numbers, the others zeros
        first.append(context.replica_id_in_sync_group)
        return tf.constant(array if len(first) == 1 else np.zeros_like(array))
    values = strategy.experimental_distribute_values_from_function(local)
    return strategy.reduce("SUM", values, axis=None).numpy()


def digest(value):
    """A number standing for `value` that survives float64 exactly (48 bits of its sha256)."""
    text = json.dumps(value, sort_keys=True, default=str)
    return float(int(hashlib.sha256(text.encode()).hexdigest()[:12], 16))


def agree(stage, items, fix, strategy=None):
    """Stop every worker with the same line when they differ in any of `items` (name: value):
    before the first step, where a difference would otherwise make them wait for each other
    in different collectives, or train a silently wrong model. Returns every worker's
    numbers, worker 0's first."""
    count, index = workers(strategy)
    names = list(items)
    if len(names) >= ITEMS:
        raise ValueError(f"more than {ITEMS - 1} items to agree on")
    rows = np.zeros((count, ITEMS))
    rows[index, 0] = digest(names)  # the same code and params keys on every worker
    rows[index, 1:len(names) + 1] = [value if isinstance(value, (int, float)) and not isinstance(value, bool)
                                     and float(value).is_integer() and abs(value) < 2**52 else digest(value)
                                     for value in items.values()]
    rows = all_sum(rows, strategy)
    for other in range(1, count):
        if rows[other, 0] != rows[0, 0]:
            raise StageError(f"{stage}: worker {other} runs other code than worker 0 (its params keys differ): "
                             f"run the same commit on every machine")
        for column, name in enumerate(names, start=1):
            if rows[other, column] != rows[0, column]:
                mine = f"; this worker, {index}, has {items[name]!r}" if index in (0, other) else ""
                raise StageError(f"{stage}: worker {other}'s {name} differs from worker 0's{mine}: {fix}")
    return rows


def flat(prefix, value):
    """A params section as {'section.key': value}, nested keys dotted."""
    if hasattr(value, "model_dump"):
        value = value.model_dump()
    if isinstance(value, dict):
        return {name: leaf for key, inner in value.items() for name, leaf in flat(f"{prefix}.{key}", inner).items()}
    return {prefix: value}


def stage_params(stage, params):
    """Every param the stage reads, dotted: its own section `params` and the others dvc.yaml
    lists for it, read from params.yaml in the working directory (a stage runs from the
    project root)."""
    from dogs_vs_cats.stage import declared_params
    declared = declared_params(stage) if Path("params.yaml").is_file() and Path("dvc.yaml").is_file() else []
    found = {}
    if declared:
        from dogs_vs_cats.config import load_params
        everything = load_params().model_dump()
        for name in declared:
            section, _, key = name.partition(".")
            found.update(flat(name, everything[section][key] if key else everything[section]))
    return {**found, **flat(stage, dict(params))}


def weights_digest(model):
    """A hash of `model`'s input shape and weights: the same model on every worker."""
    hashed = hashlib.sha256(str(model.input_shape).encode())
    for weight in model.get_weights():
        hashed.update(np.ascontiguousarray(weight).tobytes())
    return hashed.hexdigest()


def run_items(stage, trainer, data, params, augment):
    """What the workers must share, and a checkpoint must have been made with: the params,
    the photos and batches, the model before its first step."""
    validation = ValidationBatches(data)
    items = {**stage_params(stage, params), **(flat("augment", augment) if augment is not None else {}),
             "number of training photos": data["x"].count, "number of training batches": len(data["x"]),
             "number of validation photos": validation.count, "number of validation batches": len(validation),
             "model to train (its weights)": weights_digest(trainer)}
    return items


# What prints StartWatch's line: it waits on a pipe, and a byte (the traceback
# faulthandler writes before ending the stage) means the start timed out; the end of the
# pipe without one means the workers started, or the stage ended otherwise.
REPORTER = """
import json, signal, socket, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the stage; this one ends with it
stage, workers, index, timeout = json.loads(sys.argv[1])
if not sys.stdin.buffer.read(1):
    sys.exit(0)

def reachable(address):
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
            return True
    except OSError:
        return False

missing = [f"worker {i} ({address})" for i, address in enumerate(workers)
           if i != index and not reachable(address)]
who = ", ".join(missing) + " never came up" if missing else "the workers did not all answer"
print(f"error: {stage}: {who} within worker_timeout ({timeout} s) of this worker's start (worker {index}): start "
      f"every worker with the same TF_CONFIG list, its own index and the same params.yaml, and check the addresses "
      f"and the firewall", file=sys.stderr, flush=True)
"""


class StartWatch:
    """A bounded start: the workers must all be up and agree within `timeout` seconds, or
    this one ends (exit 1) with a line naming those it cannot reach. TensorFlow waits for
    them in C++ holding Python's lock, where no Python thread, signal or exception gets
    through; faulthandler's watchdog, a C thread, ends the process instead, and hands its
    traceback to a small process of ours, which prints the line."""

    def __init__(self, stage, workers, index, timeout):
        self.stage, self.workers, self.index, self.timeout = stage, workers, index, timeout

    def __enter__(self):
        self.reporter = subprocess.Popen(
            [sys.executable, "-c", REPORTER, json.dumps([self.stage, self.workers, self.index, self.timeout])],
            stdin=subprocess.PIPE)
        faulthandler.dump_traceback_later(self.timeout, file=self.reporter.stdin, exit=True)
        return self

    def __exit__(self, *exc):
        faulthandler.cancel_dump_traceback_later()
        self.reporter.stdin.close()
        self.reporter.wait()


def lost_worker(stage, error, timeout):
    """A TensorFlow error of a collective as one line naming the worker lost, when it names one."""
    text = str(getattr(error, "message", "") or error)
    task = re.search(r"/job:worker/replica:\d+/task:(\d+)", text)
    who = f"worker {task.group(1)}" if task else "another worker"
    reason = ("stopped sending heartbeats" if "heartbeat" in text else
              f"did not answer within worker_timeout ({timeout} s)" if isinstance(error, _deadline()) else
              "stopped or became unreachable")
    return StageError(f"{stage}: lost contact with {who}, which {reason} ({type(error).__name__}): the run stopped; "
                      f"start every worker again and the chief resumes from its last finished epoch")


def _deadline():
    import tensorflow as tf
    return tf.errors.DeadlineExceededError


def sweep_worker_folders():
    """Remove what killed workers left in the temporary folder (pid in the name, not running)."""
    for entry in Path(tempfile.gettempdir()).glob(f"{WORKER_FOLDER}*"):
        match = re.fullmatch(re.escape(WORKER_FOLDER) + r"(\d{1,9})-.+", entry.name)
        if match and not alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def worker_folder():
    """A folder of this worker's own in the temporary folder, removed at the end (a killed
    worker's is swept by the next run)."""
    folder = Path(tempfile.mkdtemp(prefix=f"{WORKER_FOLDER}{os.getpid()}-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def multi_worker_strategy(stage, settings):
    """MultiWorkerMirroredStrategy over TF_CONFIG's workers, all up and agreeing on the
    stage's params, within `worker_timeout` seconds."""
    import tensorflow as tf
    cluster, index = cluster_spec(stage)
    timeout = settings.get("worker_timeout", 300)
    sweep_worker_folders()
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    with StartWatch(stage, cluster, index, timeout):
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        # The strategy's preemption notifier takes SIGTERM for itself: give it back to the
        # stage, which stops as it does in one process (exit 143, nothing half-written).
        for signum, handler in handlers.items():
            if handler is not None:
                signal.signal(signum, handler)
        agree(stage, {"TF_CONFIG's worker list": cluster, **stage_params(stage, settings)},
              "run every worker with the same params.yaml (`-S` on every machine, or none) and TF_CONFIG list",
              strategy)
    seed = settings.get("seed")
    seeds = "" if seed is None else (f"; its augmentation seed is {worker_seed(seed, index)}, its dropout seeds "
                                     f"derived likewise")
    print(f"{stage}: MultiWorkerMirroredStrategy over {strategy.num_replicas_in_sync} replica(s) on "
          f"{len(cluster)} workers; this is worker {index}"
          + (" (the chief: it writes the outputs)" if not index else " (writes nothing the pipeline tracks)") + seeds,
          flush=True)
    return strategy


@contextlib.contextmanager
def training_scope(stage, params):
    """Build and train inside this block: every random generator seeded with the stage's
    `seed` (Python, NumPy, TensorFlow, Keras), and the tf.distribute strategy of its
    `distribute` param entered. `batch_size` is the global batch, split evenly across
    the replicas. Under multi_worker a collective that fails (a worker lost, or silent
    past `worker_timeout`) ends the stage in one line.
    """
    import tensorflow as tf
    settings = dict(params)
    if settings.get("seed") is not None:
        seed_everything(settings["seed"])
    distribute = settings["distribute"]
    if distribute != "multi_worker" and os.environ.get("TF_CONFIG", "").strip():
        raise StageError(f"TF_CONFIG is set but {stage}.distribute is {distribute}: run every worker with "
                         f"`-S {stage}.distribute=multi_worker` (the same params.yaml on every machine), or unset "
                         f"TF_CONFIG to train on this machine alone")
    if distribute == "multi_worker":
        strategy = multi_worker_strategy(stage, settings)
    elif distribute == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
        print(f"{stage}: MirroredStrategy over {strategy.num_replicas_in_sync} replica(s)")
    else:
        strategy = tf.distribute.get_strategy()
    try:
        with strategy.scope():
            yield strategy
    except tf.errors.OpError as e:
        if distribute != "multi_worker":
            raise
        raise lost_worker(stage, e, settings.get("worker_timeout", 300)) from None
