"""How every model of the chapter is trained, one epoch after another, in one loop for one
process and for many workers (keras.io's "Writing a training loop from scratch",
TensorFlow's "Custom training loop with MultiWorkerMirroredStrategy"): the phases, the
learning rate of each epoch, DVCLive's log, the best epoch, stopping early, a checkpoint
after every epoch to resume from, and saving.

One epoch: `train_epoch` runs `training_step` on every batch of `EpochBatches` (each worker
on its rows of the global batch), then `validation_logs` on the validation set (each worker
on its share of the batches, the figures summed exactly across the workers), then the
callbacks and the checkpoint. In one process the step is fit()'s own arithmetic, to the
bit: the same weights as `model.fit` with the same seeds and batches.

A stage's params section (typed, from `config.load_params`, or a plain mapping of its
keys) comes in as `params`; it was checked when params.yaml was loaded."""

import math
import sys
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
from dogs_vs_cats.batches import ValidationBatches
from dogs_vs_cats.checkpoint import Resume
from dogs_vs_cats.distribute import (
    agree,
    all_sum,
    digest,
    is_chief,
    reseed,
    run_items,
    worker_folder,
    worker_seed,
    workers,
)
from dogs_vs_cats.errors import StageError
from dogs_vs_cats.nets import count_trainable, recast
from dogs_vs_cats.outputs import atomic_dir, atomic_file, write_json
from dogs_vs_cats.precision import precision_policy, resolve_precision

# The losses the stages train with, as Keras' classes (whose `reduction` the loop chooses).
LOSSES = {"binary_crossentropy": keras.losses.BinaryCrossentropy,
          "sparse_categorical_crossentropy": keras.losses.SparseCategoricalCrossentropy}


def training_precision(stage, params):
    """Layers built inside this block compute in the stage's `precision` param."""
    settings = dict(params)
    if settings.get("distribute") == "multi_worker" and resolve_precision(settings["precision"]) == "mixed_float16":
        # Keras' loss scaling skips a step whose gradients overflow, decided on each
        # worker before the gradients are summed: one worker would skip, the other not.
        raise StageError(f"{stage}.precision auto is mixed_float16 on this GPU, which multi_worker cannot train: "
                         f"set {stage}.precision to float32 (or bfloat16)")
    return precision_policy(settings["precision"], f"{stage}.precision")


def open_live(directory, params, resume=False):
    """A DVCLive log in `directory`, declared in dvc.yaml (so no dvc.yaml of its own); with
    `resume`, the log already there goes on."""
    live = Live(str(directory), dvcyaml=None, save_dvc_exp=False, resume=resume)
    live.log_params(params)
    return live


class LiveCallback(DVCLiveCallback):
    """DVCLive's Keras callback that also logs the epoch's learning rate (`lr`), minus ending
    the Live when a phase ends: fine-tuning has two, and `train` ends the Live itself,
    once, so the steps keep counting."""

    def on_epoch_end(self, epoch, logs=None):
        self.live.log_metric("lr", float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
        # LearningRateScheduler adds `learning_rate` to the logs: logged once, as `lr`.
        super().on_epoch_end(epoch, {name: value for name, value in (logs or {}).items() if name != "learning_rate"})

    def on_train_end(self, logs=None):
        pass


KEPT_METRICS = {"loss", "accuracy", "val_loss", "val_accuracy"}


class KeepBest(keras.callbacks.Callback):
    """Remember the weights of `model` at the epoch with the lowest `monitor`, across
    phases, and stop training after `patience` epochs without a new best (0: never).

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


class StopOnDivergence(keras.callbacks.Callback):
    """Stop the stage at the first batch whose loss is NaN or infinite with a StageError naming the stage, the
    epoch and the likely cause. Raised during the epoch, it comes before `train` saves the model
    and moves the log into place, so the previous model and log stay; training on would
    save NaN weights that every later stage chokes on."""

    def __init__(self, lr):
        super().__init__()
        self.lr, self.epoch = lr, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.check((logs or {}).get("loss"), "loss")

    def on_epoch_end(self, epoch, logs=None):
        for name in ("loss", "val_loss"):
            self.check((logs or {}).get(name), name)

    def check(self, value, name):
        if value is None or math.isfinite(float(value)):
            return
        script = Path(sys.argv[0])  # `python -m stages.<stage>`: the name stage.run gives it too
        stage = script.stem if script.parent.name == "stages" else "training"
        raise StageError(f"{stage}: the {'validation ' if name == 'val_loss' else ''}loss became {float(value)} "
                         f"in epoch {self.epoch + 1}, so training stopped and the previous model was kept: the "
                         f"learning rate {self.lr:g} is likely too high; lower it in params.yaml")


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


def compile_phase(trainer, phase, loss):
    if phase.prepare:
        phase.prepare()
    # Changes to `trainable` only take effect after compiling again.
    trainer.compile(optimizer=keras.optimizers.RMSprop(learning_rate=phase.lr), loss=loss, metrics=["accuracy"])
    trainer.optimizer.build(trainer.trainable_variables)  # its slots, created under the strategy


def phase_callbacks(live, best, phase, first_epoch, schedule):
    """The callbacks of one phase: the learning rate of each epoch, DVCLive, the best
    epoch, and stopping when the loss diverges."""
    rate = keras.callbacks.LearningRateScheduler(
        lambda epoch, lr: phase_lr(schedule, phase.lr, epoch - first_epoch, phase.epochs))
    return [rate, LiveCallback(live=live), best, StopOnDivergence(phase.lr)]


def hits(loss, y, p):
    """1 where the prediction `p` is right, as compile's "accuracy" counts it (0.5 threshold
    for one sigmoid, the top class for a softmax)."""
    from keras import ops
    p = ops.cast(p, "float32")
    if loss == "binary_crossentropy":
        return ops.cast(ops.equal(ops.cast(ops.reshape(p, [-1]) > 0.5, "float32"),
                                  ops.cast(ops.reshape(y, [-1]), "float32")), "float32")
    return ops.cast(ops.equal(ops.argmax(p, axis=-1), ops.cast(ops.reshape(y, [-1]), "int64")), "float32")


def training_step(trainer, loss, strategy):
    """One step on a global batch: every replica computes the loss of its rows, the
    optimizer sums the replicas' gradients and applies them. Returns the batch's summed
    loss and hits.

    One replica computes the compiled loss, the batch mean, exactly as fit()'s train_step:
    the same weights to the bit. Several scale the sum of their rows' losses by the global
    batch, so that the summed gradients are the whole batch's (TensorFlow's custom-loop
    guide; a replica's rows may be one fewer than another's)."""
    import tensorflow as tf
    summed = LOSSES[loss](reduction="sum")
    replicas = strategy.num_replicas_in_sync

    def replica_step(x, y, count):
        with tf.GradientTape() as tape:
            p = trainer(x, training=True)
            if replicas == 1:
                value = trainer.compute_loss(x=x, y=y, y_pred=p, training=True)
            else:
                value = summed(y, p) / count
            scaled = trainer.optimizer.scale_loss(value)  # mixed_float16's loss scaling, set by compile()
        variables = trainer.trainable_variables
        trainer.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        p = tf.cast(p, "float32")
        return summed(y, p), tf.reduce_sum(hits(loss, y, p))

    def run(x, y, count):
        totals = strategy.run(replica_step, args=(x, y, count))
        return [strategy.reduce("SUM", total, axis=None) for total in totals]
    if replicas > 1:
        return tf.function(run, reduce_retracing=True)
    compiled = []

    def step(x, y, count):
        # Traced once for any batch size, as fit() traces its step from its data's spec: a
        # graph of fixed shapes lets TensorFlow's graph optimizer order some arithmetic
        # differently (augmentation's, by a last bit); and compiled with XLA where fit()
        # would (`jit_compile` "auto": on a GPU, for layers that support it).
        if not compiled:
            specs = [tf.TensorSpec((None, *np.shape(value)[1:]), tf.as_dtype(np.asarray(value).dtype))
                     for value in (x, y)]
            compiled.append(tf.function(run, input_signature=[*specs, tf.TensorSpec((), tf.float32)],
                                        jit_compile=trainer.jit_compile))
        return compiled[0](x, y, count)
    return step


def feed(batches, index, strategy):
    """Batch `index` as the step takes it, and its number of rows: whole in one replica;
    else each replica's rows (`EpochBatches.rows`), which only its worker reads."""
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        x, y = batches[index]
        return x, y, len(y)
    shares = {}

    def rows(context):
        replica = context.replica_id_in_sync_group
        shares[replica] = batches.rows(index, replica, replicas)
        return shares[replica][0]
    x = strategy.experimental_distribute_values_from_function(rows)
    y = strategy.experimental_distribute_values_from_function(
        lambda context: shares[context.replica_id_in_sync_group][1])
    return x, y, len(batches.indices(index))


def train_epoch(step, batches, epoch, callbacks, strategy):
    """One pass over the training batches of `epoch`: its loss and accuracy."""
    batches.epoch = epoch
    totals = np.zeros(3)
    for index in tqdm(range(len(batches)), desc=f"epoch {epoch + 1}", unit="batch", mininterval=2, leave=False,
                      disable=not is_chief(strategy)):
        callbacks.on_train_batch_begin(index)
        x, y, count = feed(batches, index, strategy)
        loss_sum, hit_sum = step(x, y, keras.ops.convert_to_tensor(count, "float32"))
        totals += (float(loss_sum), float(hit_sum), count)
        callbacks.on_train_batch_end(index, {"loss": totals[0] / totals[2], "accuracy": totals[1] / totals[2]})
    return {"loss": totals[0] / totals[2], "accuracy": totals[1] / totals[2]}


def validation_logs(predict, data, loss="binary_crossentropy"):
    """val_loss and val_accuracy over the validation set of `data` ({} without one).

    Each worker predicts whole batches, every n-th, as one process makes them, and puts
    each photo's loss and hit in its place; summed over the workers (zeros elsewhere)
    every worker holds every photo's figures, added up in one order: the same numbers
    as one process, to the bit, and the same decisions on every worker."""
    batches = ValidationBatches(data)
    if not batches.count:
        return {}
    count, index = workers()
    each = LOSSES[loss](reduction="none")
    figures = np.zeros((2, batches.count))
    for number in range(index, len(batches), count):
        images, labels, positions = batches[number]
        p = np.asarray(predict(images), np.float32)
        figures[0, positions] = keras.ops.convert_to_numpy(each(labels, p))
        figures[1, positions] = keras.ops.convert_to_numpy(hits(loss, labels, p))
    figures = all_sum(figures)
    return {"val_loss": math.fsum(figures[0]) / batches.count, "val_accuracy": math.fsum(figures[1]) / batches.count}


def fit_phases(trainer, data, phases, loss, live, best, schedule, resume):
    """Every phase's epochs, numbered on from phase to phase, from where `resume` starts;
    the number of epochs run."""
    import tensorflow as tf
    strategy = tf.distribute.get_strategy()
    predict = tf.function(lambda x: trainer(x, training=False), reduce_retracing=True)
    done, resumed = 0, False
    for phase in phases:
        first, end = done, done + phase.epochs
        done = max(done, end)
        if phase.epochs <= 0 or best.stopped or end <= resume.epoch:
            continue
        compile_phase(trainer, phase, loss)
        if resume.epoch and not resumed:
            resume.restore(trainer, optimizer=resume.epoch > first)
            resumed = True
        callbacks = keras.callbacks.CallbackList(phase_callbacks(live, best, phase, first, schedule), model=trainer)
        step = training_step(trainer, loss, strategy)
        trainer.stop_training = False
        callbacks.on_train_begin()
        for epoch in range(max(first, resume.epoch), end):
            callbacks.on_epoch_begin(epoch)
            logs = {**train_epoch(step, data["x"], epoch, callbacks, strategy), **validation_logs(predict, data, loss)}
            callbacks.on_epoch_end(epoch, logs)
            print(f"epoch {epoch + 1}: " + ", ".join(f"{name} {value:.4f}" for name, value in logs.items()
                                                     if name in KEPT_METRICS), flush=True)
            resume.save(epoch + 1, trainer, best, live)
            if trainer.stop_training:
                break
        callbacks.on_train_end()
    if resume.epoch and not resumed:  # stopped after its last epoch, or after stopping early
        resume.restore(trainer, optimizer=False)
    return best.last_epoch


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
          trainer=None, logs=None):
    """Train through `phases` with RMSprop, log every epoch with DVCLive to `logs`
    (dvclive/<stage>), and save `model` with the weights of the epoch with the lowest
    validation loss to `output` (models/<stage>.keras).

    `data` holds the training batches `x` (an `EpochBatches`, whose order is drawn per
    epoch) and the validation set (`validation_data`: an `EpochBatches`, or arrays with
    `validation_batch_size`; none: nothing to monitor). `trainer` is the model that is
    trained when it is not `model` itself: a part of it that shares its weights. With
    `augment`, training runs the images through augmentation layers first; they are not
    part of the saved model, which sees raw images.

    Under multi_worker the workers first agree on the params, photos, batches and starting
    weights; only the chief writes the model, the log and the checkpoint. A checkpoint of
    the same run beside `output` (left by a run that was stopped) is resumed from.
    """
    params = dict(params)
    trainer = trainer or model
    best = KeepBest(trainer, params.get("early_stopping", 0))  # mnist has no validation set to stop on
    if augment is not None:
        trainer = keras.Sequential([keras.Input(trainer.input_shape[1:]), augmentation(augment, params.get("seed")),
                                    trainer], name=f"{stage}_trainer")
    started = time.perf_counter()
    output = Path(output or f"models/{stage}.keras")
    schedule = params.get("lr_schedule", "constant")
    items = run_items(stage, trainer, data, params, augment)
    count, index = workers()
    if count > 1:
        agree(stage, items, "every worker needs the same data and starting models (`dvc pull`, or the same "
                            "`dvc repro` of what the stage reads) and the same params.yaml")
    reseed(trainer)
    resume = Resume(output, digest(items), best)
    logged = dict(params)
    if count > 1 and params.get("seed") is not None:
        logged["worker_seeds"] = [worker_seed(params["seed"], worker) for worker in range(count)]
    # The log is written to a temporary folder and moved into dvclive/<stage> with the model:
    # a killed run leaves neither a half-written log nor a log of a model it did not save.
    # Workers other than the chief log to a folder of their own, removed at the end.
    with (atomic_dir(logs or f"dvclive/{stage}") if not index else worker_folder()) as logs:
        resume.restore_log(logs)
        live = open_live(logs, logged, resume=bool(resume.epoch))
        live.step = resume.epoch
        done = fit_phases(trainer, data, phases, loss, live, best, schedule, resume)
        best.restore()
        summarize(live, best, done, started, resolve_precision(params.get("precision", "float32")), logs)
        # Only a run that ended well ends its log: Live.end() waits for DVCLive's queue of
        # updates, which a Ctrl-C or SIGTERM in the middle of one leaves waiting forever
        # (the log of an interrupted run is discarded with its temporary folder anyway).
        live.end()
        if index:
            # Saving may build new variables (a float32 copy), which every worker must take
            # part in (TensorFlow's multi-worker guide): the others save to a folder of their own.
            save(model, Path(logs) / output.name)
            print(f"{stage}: worker {index} done after {done} epochs; the chief saves")
            return model
        saved = save(model, output)
    resume.remove()
    kept = f"best val_loss {best.best:.4f} at epoch {best.best_epoch}" if best.best_epoch else f"epoch {done}"
    stopped = f", stopped early after {done} epochs" if best.stopped else ""
    print(f"wrote {output} ({kept}{stopped}; {model.count_params():,} parameters, "
          f"{count_trainable(model):,} trainable)")
    return saved
