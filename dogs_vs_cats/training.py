"""How every model of the chapter is trained: seeding, data, DVCLive logging, keeping the
best epoch, stopping early, saving.

A stage's params section (typed, from `config.load_params`, or a plain mapping of its
keys) comes in as `params`; it was checked when params.yaml was loaded."""

import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import keras
import numpy as np
from dvclive import Live
from dvclive.keras import DVCLiveCallback
from tqdm import tqdm

from dogs_vs_cats.augment import augmentation
from dogs_vs_cats.catalog import SPLIT_DIR
from dogs_vs_cats.errors import StageError
from dogs_vs_cats.images import list_images, load_image, load_images
from dogs_vs_cats.nets import count_trainable, recast
from dogs_vs_cats.outputs import atomic_dir, atomic_file, write_json
from dogs_vs_cats.precision import precision_policy, resolve_precision


def seed_everything(seed):
    keras.utils.set_random_seed(seed)


MULTI_WORKER_HELP = ("set TF_CONFIG on every worker before running the stage's cmd, e.g. TF_CONFIG="
                     "'{\"cluster\": {\"worker\": [\"host1:12345\", \"host2:12345\"]}, "
                     "\"task\": {\"type\": \"worker\", \"index\": 0}}' with index 0 on the chief, "
                     "1 on the next machine (docs/scaling-out.md)")


def cluster_spec(stage):
    """TF_CONFIG's workers and this process's index, checked: StageError saying what to set."""
    raw = os.environ.get("TF_CONFIG", "")
    where = f"{stage}.distribute is multi_worker"
    if not raw.strip():
        raise StageError(f"{where} but TF_CONFIG is not set: {MULTI_WORKER_HELP}")
    try:
        config = json.loads(raw)
        workers, task = config["cluster"]["worker"], config["task"]
        index = int(task["index"])
    except (ValueError, KeyError, TypeError):
        raise StageError(f"{where} but TF_CONFIG is not a cluster of workers and a task: {MULTI_WORKER_HELP}") from None
    if set(config["cluster"]) != {"worker"}:
        raise StageError(f"{where} but TF_CONFIG's cluster has the jobs {sorted(config['cluster'])}: only "
                         f"workers are supported (worker 0 is the chief): {MULTI_WORKER_HELP}")
    if task.get("type") != "worker" or not 0 <= index < len(workers):
        raise StageError(f"{where} but TF_CONFIG's task is {task} for workers {workers}: {MULTI_WORKER_HELP}")
    return workers, index


@contextlib.contextmanager
def training_scope(stage, params):
    """Build and train inside this block: every random generator seeded with the stage's
    `seed` (Python, NumPy, TensorFlow, Keras), and the tf.distribute strategy of its
    `distribute` param entered.

    none: TensorFlow's default, one device. mirrored: MirroredStrategy, one replica per
    local GPU (the CPU when there is none), weights kept in sync after every batch.
    multi_worker: MultiWorkerMirroredStrategy over the machines TF_CONFIG lists, each running
    the stage's own cmd; `train` then runs its own training step (Keras' fit() cannot run
    under it) and only the chief, worker 0, writes the outputs. `batch_size` is the global
    batch, split evenly across the replicas.
    """
    import tensorflow as tf
    settings = dict(params)
    if settings.get("seed") is not None:
        seed_everything(settings["seed"])
    distribute = settings["distribute"]
    if distribute == "multi_worker":
        workers, index = cluster_spec(stage)
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        print(f"{stage}: MultiWorkerMirroredStrategy over {strategy.num_replicas_in_sync} replica(s) on "
              f"{len(workers)} workers; this is worker {index}" + (" (the chief: it writes the outputs)" if not index
                                                                    else " (writes nothing the pipeline tracks)"))
    elif distribute == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
        print(f"{stage}: MirroredStrategy over {strategy.num_replicas_in_sync} replica(s)")
    else:
        strategy = tf.distribute.get_strategy()
    with strategy.scope():
        yield strategy


def multi_worker(strategy):
    import tensorflow as tf
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy):
    """Whether this process writes the outputs: always, but for workers 1.. under multi_worker."""
    return not multi_worker(strategy) or strategy.cluster_resolver.task_id == 0


def training_precision(stage, params):
    """Layers built inside this block compute in the stage's `precision` param."""
    return precision_policy(dict(params)["precision"], f"{stage}.precision")


def split_labels(split, root=SPLIT_DIR):
    paths, labels = list_images(split, root)
    return paths, np.asarray(labels, dtype=np.float32)


class EpochBatches(keras.utils.PyDataset):
    """Training batches in an order this project draws, not Keras or tf.data: epoch `e`
    takes the examples in the order of numpy's default_rng((seed, e)).permutation
    (`shuffle=False`: in their own order, for validation). fit() must get `shuffle=False`.

    `epoch` is set from outside (train() before each fit(), and `FollowEpochs` at every
    epoch's start), not counted in `on_epoch_end`: Keras 3.15 calls on_epoch_end once more
    at the start of every fit(), after reading batches 0 and 1 to learn their shapes
    (tests/test_training.py records that order). A subclass gives `batch(indices)`.
    """

    def __init__(self, count, batch_size, labels, seed=0, shuffle=True):
        super().__init__()  # one worker: batches are made in order, in fit()'s data thread
        self.count, self.batch_size, self.seed, self.shuffle = count, batch_size, seed, shuffle
        self.labels = np.asarray(labels, dtype=np.float32)
        self.epoch = 0

    def order(self, epoch):
        if not self.shuffle:
            return np.arange(self.count)
        return np.random.default_rng((self.seed, epoch)).permutation(self.count)

    def __len__(self):
        return -(-self.count // self.batch_size)

    def __getitem__(self, index):
        indices = self.order(self.epoch)[index * self.batch_size:(index + 1) * self.batch_size]
        return self.batch(indices), self.labels[indices]

    def batch(self, indices):
        raise NotImplementedError


class ArrayBatches(EpochBatches):
    """Batches of in-memory arrays (uint8 images are handed over as float32)."""

    def __init__(self, x, labels, batch_size, seed=0, shuffle=True):
        super().__init__(len(x), batch_size, labels, seed, shuffle)
        self.x = x

    def batch(self, indices):
        return self.x[indices].astype(np.float32)


class FileBatches(EpochBatches):
    """Batches of images decoded from disk on every request, exactly as `load_images` decodes them."""

    def __init__(self, paths, labels, size, batch_size, seed=0, shuffle=True):
        super().__init__(len(paths), batch_size, labels, seed, shuffle)
        self.paths, self.size = list(paths), size

    def batch(self, indices):
        return np.stack([load_image(self.paths[i], self.size).numpy() for i in indices])


class FollowEpochs(keras.callbacks.Callback):
    """Tell `batches` which epoch fit() starts (its absolute number, across phases)."""

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.epoch = epoch


def image_data(size, batch_size, seed, cached, root=SPLIT_DIR):
    """fit()'s data arguments: training batches (an `EpochBatches`, reshuffled every epoch by
    `seed`) and validation batches from the split folder `root`.

    Cached, every image is decoded and resized once and kept in memory as uint8; the
    batches are the same as when decoding from disk on every request.
    """
    (train_paths, train_labels), (val_paths, val_labels) = split_labels("train", root), split_labels("validation", root)
    if cached:
        train = ArrayBatches(load_images(train_paths, size, "decoding train"), train_labels, batch_size, seed)
        validation = ArrayBatches(load_images(val_paths, size, "decoding validation"), val_labels, batch_size,
                                  shuffle=False)
    else:
        train = FileBatches(train_paths, train_labels, size, batch_size, seed)
        validation = FileBatches(val_paths, val_labels, size, batch_size, shuffle=False)
    return {"x": train, "validation_data": validation}


def open_live(directory, params):
    """A DVCLive log in `directory`, declared in dvc.yaml (so no dvc.yaml of its own)."""
    live = Live(str(directory), dvcyaml=None, save_dvc_exp=False)
    live.log_params(dict(params))
    return live


class LiveCallback(DVCLiveCallback):
    """DVCLive's Keras callback that also logs the epoch's learning rate (`lr`), minus ending
    the Live when a fit() ends: fine-tuning fits twice, and `train` ends the Live itself,
    once, so the steps keep counting."""

    def on_epoch_end(self, epoch, logs=None):
        self.live.log_metric("lr", float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
        # LearningRateScheduler adds `learning_rate` to the logs: logged once, as `lr`.
        super().on_epoch_end(epoch, {name: value for name, value in (logs or {}).items() if name != "learning_rate"})

    def on_train_end(self, logs=None):
        pass


KEPT_METRICS = {"loss", "accuracy", "val_loss", "val_accuracy"}


class KeepBest(keras.callbacks.Callback):
    """Remember the weights of `model` at the epoch with the lowest `monitor`, across fit()
    calls, and stop training after `patience` epochs without a new best (0: never).

    `model` is the one to keep, which may be part of the model being trained. Keras'
    EarlyStopping(restore_best_weights=True) forgets its best at every fit(), so it cannot
    keep the best epoch across fine-tuning's two phases.
    """

    def __init__(self, model, patience=0, monitor="val_loss"):
        super().__init__()
        self.kept, self.patience, self.monitor = model, patience, monitor
        self.best, self.best_weights, self.best_epoch, self.last_epoch = float("inf"), None, None, 0
        self.best_logs = {}  # the kept epoch's metrics (the last epoch's when nothing is monitored)
        self.stopped = False
        self.epoch_ends = [time.perf_counter()]  # wall clock: the start, then the end of every epoch

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_ends.append(time.perf_counter())
        self.last_epoch = epoch + 1
        value = (logs or {}).get(self.monitor)
        if value is None:
            self.best_logs = dict(logs or {})
            return
        if value < self.best:
            self.best, self.best_weights, self.best_epoch = value, self.kept.get_weights(), epoch + 1
            self.best_logs = dict(logs)
        elif self.patience and epoch + 1 - self.best_epoch >= self.patience:
            self.stopped = self.model.stop_training = True

    def restore(self):
        if self.best_weights is not None:
            self.kept.set_weights(self.best_weights)


@dataclass
class Phase:
    epochs: int
    lr: float
    prepare: Optional[Callable[[], None]] = None  # e.g. freeze or unfreeze layers first


def phase_lr(schedule, lr, step, epochs):
    """The learning rate of the phase's epoch `step` (0-based) of `epochs`: `lr` throughout
    (constant, the book's), or cosine decay from `lr` towards 0 (reached after the last epoch)."""
    if schedule == "cosine":
        return lr * 0.5 * (1 + math.cos(math.pi * step / epochs))
    return lr


def fit_verbosity():
    # Keras' per-batch progress bar on a terminal; one line per epoch in logs.
    return 1 if sys.stdout.isatty() else 2


def compile_phase(trainer, phase, loss):
    if phase.prepare:
        phase.prepare()
    # Changes to `trainable` only take effect after compiling again.
    trainer.compile(optimizer=keras.optimizers.RMSprop(learning_rate=phase.lr), loss=loss, metrics=["accuracy"])


def phase_callbacks(live, best, data, phase, first_epoch, schedule):
    """The callbacks of one phase's fit(): the learning rate of each epoch, DVCLive, the best
    epoch, and the epoch the batches are drawn for."""
    rate = keras.callbacks.LearningRateScheduler(
        lambda epoch, lr: phase_lr(schedule, phase.lr, epoch - first_epoch, phase.epochs))
    callbacks = [rate, LiveCallback(live=live), best]
    if isinstance(data["x"], EpochBatches):
        data["x"].epoch = first_epoch  # fit() reads the first batches before its first epoch starts
        callbacks.append(FollowEpochs(data["x"]))
    return callbacks


def fit_phases(trainer, data, phases, loss, live, best, schedule):
    """One fit() per phase, the epochs numbered on from phase to phase; the number of epochs run."""
    done = 0
    for phase in phases:
        if phase.epochs <= 0 or best.stopped:
            continue
        compile_phase(trainer, phase, loss)
        trainer.fit(**data, shuffle=False, initial_epoch=done, epochs=done + phase.epochs, verbose=fit_verbosity(),
                    callbacks=phase_callbacks(live, best, data, phase, done, schedule))
        done = best.last_epoch
    return done


def replica_slices(strategy, array):
    """A global batch split across the replicas: replica r takes rows r, r + n, r + 2n, ..."""
    count = strategy.num_replicas_in_sync
    if count == 1:
        return array
    return strategy.experimental_distribute_values_from_function(
        lambda context: array[context.replica_id_in_sync_group::count])


def training_step(trainer, strategy):
    """One step on a global batch under `strategy` (Keras' Custom training loops guide, and
    TensorFlow's multi-worker one): every replica computes the binary cross-entropy of its
    slice, scaled by the global batch, so the gradients the optimizer sums over the replicas
    are those of the whole batch, as in fit(). Returns the batch's summed loss and hits."""
    import tensorflow as tf

    def replica_step(x, y, count):
        with tf.GradientTape() as tape:
            p = tf.cast(tf.reshape(trainer(x, training=True), [-1, 1]), "float32")
            losses = keras.losses.binary_crossentropy(tf.reshape(y, [-1, 1]), p)
            # scale_loss: mixed_float16's loss scaling, which compile() put in the optimizer
            scaled = trainer.optimizer.scale_loss(tf.reduce_sum(losses) / count)
        variables = trainer.trainable_variables
        trainer.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        hits = tf.reduce_sum(tf.cast(tf.equal(tf.cast(p[:, 0] > 0.5, "float32"), tf.reshape(y, [-1])), "float32"))
        return tf.reduce_sum(losses), hits

    @tf.function(reduce_retracing=True)
    def step(x, y, count):
        totals = strategy.run(replica_step, args=(x, y, count))
        return [strategy.reduce("SUM", total, axis=None) for total in totals]
    return step


def validation_logs(predict, data):
    """val_loss and val_accuracy over the validation set, computed whole on this process
    (the weights are the same on every worker; `agreed` makes the figures the same too)."""
    validation, batch_size = data["validation_data"], data.get("validation_batch_size") or 32
    if isinstance(validation, EpochBatches):
        batches = (validation[index] for index in range(len(validation)))
    else:
        x, y = validation
        batches = ((np.asarray(x[start:start + batch_size], np.float32), y[start:start + batch_size])
                   for start in range(0, len(x), batch_size))
    loss, hits, count = 0.0, 0.0, 0
    for images, labels in batches:
        p = np.asarray(predict(images), np.float32).reshape(-1, 1)
        labels = np.asarray(labels, np.float32).reshape(-1, 1)
        loss += float(np.sum(keras.ops.convert_to_numpy(keras.losses.binary_crossentropy(labels, p))))
        hits += float(np.sum((p > 0.5) == (labels > 0.5)))
        count += len(labels)
    return {"val_loss": loss / count, "val_accuracy": hits / count}


def agreed(strategy, figures):
    """`figures` averaged over the workers: every worker then takes the same decisions on
    them (the best epoch, stopping early), even where other hardware rounds differently;
    a worker that stopped alone would wait for the others' next step forever."""
    import tensorflow as tf
    if strategy.num_replicas_in_sync == 1:
        return figures
    names = sorted(figures)
    local = tf.constant([figures[name] for name in names], tf.float64)
    mean = strategy.reduce("MEAN", strategy.run(lambda: tf.identity(local)), axis=None)
    return dict(zip(names, (float(value) for value in mean.numpy())))


def fit_phases_stepwise(trainer, data, phases, loss, live, best, schedule, strategy):
    """fit_phases with `training_step` instead of fit(): the same batches, callbacks
    (learning-rate schedule, DVCLive, the best epoch, early stopping) and epochs, under any
    strategy, MultiWorkerMirroredStrategy included, where fit() fails (keras-team/keras#20585)."""
    import tensorflow as tf
    if loss != "binary_crossentropy":
        raise StageError(f"distribute: multi_worker trains binary classifiers only, not a model with {loss}")
    done = 0
    for phase in phases:
        if phase.epochs <= 0 or best.stopped:
            continue
        compile_phase(trainer, phase, loss)
        trainer.optimizer.build(trainer.trainable_variables)  # its slots, created under the strategy
        callbacks = keras.callbacks.CallbackList(phase_callbacks(live, best, data, phase, done, schedule),
                                                 model=trainer)
        step, batches = training_step(trainer, strategy), data["x"]
        predict = tf.function(lambda x: trainer(x, training=False), reduce_retracing=True)
        trainer.stop_training = False
        callbacks.on_train_begin()
        for epoch in range(done, done + phase.epochs):
            callbacks.on_epoch_begin(epoch)
            totals = np.zeros(3)
            for index in tqdm(range(len(batches)), desc=f"epoch {epoch + 1}", unit="batch", mininterval=2,
                              leave=False, disable=not is_chief(strategy)):
                x, y = batches[index]
                loss_sum, hits = step(replica_slices(strategy, x), replica_slices(strategy, y),
                                      keras.ops.convert_to_tensor(len(y), "float32"))
                totals += (float(loss_sum), float(hits), len(y))
            logs = {"loss": totals[0] / totals[2], "accuracy": totals[1] / totals[2],
                    **agreed(strategy, validation_logs(predict, data))}
            callbacks.on_epoch_end(epoch, logs)
            print(f"epoch {epoch + 1}: " + ", ".join(f"{name} {value:.4f}" for name, value in logs.items()))
            if trainer.stop_training:
                break
        done = best.last_epoch
    return done


def summarize(live, best, done, started, precision, logs):
    """The run's summary in DVCLive's metrics.json (`precision`: the one it ran in), and its
    wall times in timing.json beside it.

    Wall times are not metrics: they differ from run to run, and `dvc metrics diff` should
    show only what the params changed. The first epoch (with tracing and caches) and the
    mean of the rest are what bench/book_schedule.py compares.
    """
    live.summary["best_epoch"] = best.best_epoch or done
    # metrics.json's train/eval are the last epoch's; `best` is the saved model's epoch,
    # what `dvc metrics diff` should compare.
    best_metrics = {split: {name.removeprefix("val_"): round(float(value), 6)
                            for name, value in best.best_logs.items()
                            if name in KEPT_METRICS and name.startswith("val_") == (split == "eval")}
                    for split in ("train", "eval")}
    live.summary["best"] = {split: values for split, values in best_metrics.items() if values}
    live.summary["epochs_run"] = done
    live.summary["precision"] = precision
    durations = np.diff(best.epoch_ends)
    timing = {"train_time_s": round(time.perf_counter() - started, 1)}
    if len(durations):
        timing["first_epoch_s"] = round(float(durations[0]), 2)
    if len(durations) > 1:
        timing["epoch_s"] = round(float(durations[1:].mean()), 2)
    write_json(Path(logs) / "timing.json", timing)


def save(model, output):
    """`model` in float32 (see `recast`) at `output`, written atomically."""
    saved = recast(model, "float32")
    with atomic_file(output) as tmp:
        saved.save(tmp)
    return saved


def train(stage, model, data, phases, params, augment=None, loss="binary_crossentropy", output=None,
          trainer=None, logs=None, stepwise=None):
    """Fit through `phases` with RMSprop, log every epoch with DVCLive to `logs`
    (dvclive/<stage>), and save `model` with the weights of the epoch with the lowest
    validation loss to `output` (models/<stage>.keras).

    `data` holds fit()'s data arguments; its training batches `x` are an `EpochBatches`,
    whose order is drawn per epoch. `trainer` is the model that is fitted when it is not
    `model` itself: a part of it that shares its weights. With `augment`, training runs
    the images through augmentation layers first; they are not part of the saved model,
    which sees raw images. `stepwise` trains with `training_step` instead of fit() (None:
    under multi_worker only, where fit() fails; tests compare the two).
    """
    import tensorflow as tf
    params = dict(params)
    strategy = tf.distribute.get_strategy()
    trainer = trainer or model
    best = KeepBest(trainer, params.get("early_stopping", 0))  # mnist has no validation set to stop on
    if augment is not None:
        trainer = keras.Sequential([keras.Input(trainer.input_shape[1:]), augmentation(augment, params.get("seed")),
                                    trainer], name=f"{stage}_trainer")
    started = time.perf_counter()
    output = Path(output or f"models/{stage}.keras")
    schedule = params.get("lr_schedule", "constant")
    # The log is written to a temporary folder and moved into dvclive/<stage> with the model:
    # a killed run leaves neither a half-written log nor a log of a model it did not save.
    # Workers other than the chief log to a folder of their own, removed at the end.
    with (atomic_dir(logs or f"dvclive/{stage}") if is_chief(strategy) else worker_logs()) as logs:
        with open_live(logs, params) as live:
            if multi_worker(strategy) if stepwise is None else stepwise:
                done = fit_phases_stepwise(trainer, data, phases, loss, live, best, schedule, strategy)
            else:
                done = fit_phases(trainer, data, phases, loss, live, best, schedule)
            best.restore()
            summarize(live, best, done, started, resolve_precision(params.get("precision", "float32")), logs)
        if not is_chief(strategy):
            # Saving builds new variables, which every worker must take part in (TensorFlow's
            # multi-worker guide): the others save to a folder of their own, then remove it.
            save(model, Path(logs) / output.name)
            print(f"{stage}: worker {strategy.cluster_resolver.task_id} done after {done} epochs; the chief saves")
            return model
        saved = save(model, output)
    kept = f"best val_loss {best.best:.4f} at epoch {best.best_epoch}" if best.best_epoch else f"epoch {done}"
    stopped = f", stopped early after {done} epochs" if best.stopped else ""
    print(f"wrote {output} ({kept}{stopped}; {model.count_params():,} parameters, "
          f"{count_trainable(model):,} trainable)")
    return saved


@contextlib.contextmanager
def worker_logs():
    folder = Path(tempfile.mkdtemp(prefix="dogs-vs-cats-worker-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
