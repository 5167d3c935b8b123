"""Resuming a stopped run: after every epoch the chief keeps what training needs to go on
beside the model it makes (models/.dogs-vs-cats-resume-<model>/, outside DVC's outputs):
every variable of the model trained and of its optimizer (random generators' states
included), the best epoch so far with its weights, and the DVCLive log. A run of the same
stage with the same params, data and starting model (the same fingerprint) goes on from
the last finished epoch; the folder is removed once the model is saved."""

import json
import shutil
from pathlib import Path

import keras
import numpy as np

from dogs_vs_cats.distribute import all_sum, is_chief, reseed
from dogs_vs_cats.errors import StageError
from dogs_vs_cats.outputs import atomic_dir, sweep_debris

# Not a temporary (whose names start with outputs.PREFIX): never swept as debris, since a
# run stopped at any point resumes from it; only its own half-written copies are.
RESUME = ".dogs-vs-cats-resume-"


class Checkpoint:
    """The checkpoint folder of `output` for a run whose inputs hash to `fingerprint`."""

    def __init__(self, output, fingerprint):
        output = Path(output)
        self.folder = output.with_name(f"{RESUME}{output.name}")
        self.fingerprint = fingerprint

    def load(self):
        """The state of the last finished epoch (a dict), or None: no checkpoint, or one of
        another run (other params, data or starting model), which is then removed."""
        sweep_debris([self.folder])  # a checkpoint half-written when the run was killed
        try:
            state = json.loads((self.folder / "state.json").read_text())
        except (OSError, ValueError):
            return None
        if state.get("fingerprint") != self.fingerprint:
            print(f"{self.folder} is the checkpoint of a run with other params, data or starting model: "
                  f"starting from epoch 1")
            self.remove()
            return None
        return state

    def save(self, epochs, trainer, best, live_dir):
        """Replace the checkpoint, in one rename, with the state after `epochs` epochs."""
        with atomic_dir(self.folder) as tmp:
            for part, variables in (("model", trainer.variables), ("optimizer", trainer.optimizer.variables)):
                np.savez(tmp / f"{part}.npz", *[keras.ops.convert_to_numpy(v) for v in variables])
            if best.best_weights is not None:
                np.savez(tmp / "best.npz", *best.best_weights)
            shutil.copytree(live_dir, tmp / "live")
            state = {"fingerprint": self.fingerprint, "epochs": epochs, "best": best.best,
                     "best_epoch": best.best_epoch, "best_logs": best.best_logs, "last_epoch": best.last_epoch,
                     "stopped": best.stopped}
            (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n")

    def arrays(self, part):
        """The stored values of `part`: model (its variables, random generators' included),
        optimizer (the phase's), or best (the best epoch's weights; None if none)."""
        path = self.folder / f"{part}.npz"
        if not path.is_file():
            return None
        with np.load(path) as stored:
            return [stored[f"arr_{index}"] for index in range(len(stored.files))]

    def restore_log(self, live_dir):
        """The DVCLive log as it was after the last finished epoch, into `live_dir`."""
        if (self.folder / "live").is_dir():
            shutil.copytree(self.folder / "live", live_dir, dirs_exist_ok=True)

    def check_fits(self, variables, values):
        if values is None or [tuple(v.shape) for v in variables] != [value.shape for value in values]:
            raise StageError(f"{self.folder} does not fit this model: remove it (rm -r '{self.folder}') and run again")

    def remove(self):
        shutil.rmtree(self.folder, ignore_errors=True)


class Resume:
    """Where this run starts: after the last finished epoch of the chief's checkpoint of
    the same run, or at the start. The chief reads it and every worker takes its state."""

    def __init__(self, output, fingerprint, best):
        self.checkpoint = Checkpoint(output, fingerprint) if is_chief() else None
        state = self.checkpoint.load() if self.checkpoint else None
        numbers = all_sum([state["epochs"], state["best"], state["best_epoch"] or 0, state["last_epoch"],
                           state["stopped"]] if state else np.zeros(5))
        self.epoch = int(numbers[0])
        if self.epoch:
            best.best, best.best_epoch = float(numbers[1]), int(numbers[2]) or None
            best.last_epoch, best.stopped = int(numbers[3]), bool(numbers[4])
            if state:
                best.best_logs, best.best_weights = state["best_logs"], self.checkpoint.arrays("best")
            print(f"resuming after epoch {self.epoch} from {self.checkpoint.folder if state else 'the chief'}")

    def restore(self, trainer, optimizer):
        """The model's variables after the last finished epoch and, with `optimizer` (the
        run stopped within this phase), its optimizer's: the chief's on every worker, each
        of which then draws its own random numbers on from where they were."""
        for part, variables in (("model", trainer.variables), ("optimizer", trainer.optimizer.variables)):
            if part == "optimizer" and not optimizer:
                continue
            values = self.checkpoint.arrays(part) if self.checkpoint else [np.zeros(v.shape) for v in variables]
            if self.checkpoint:
                self.checkpoint.check_fits(variables, values)
            for variable, value in zip(variables, values):
                variable.assign(all_sum(value).astype(keras.ops.convert_to_numpy(variable).dtype))
        reseed(trainer)

    def restore_log(self, live_dir):
        if self.epoch and self.checkpoint:
            self.checkpoint.restore_log(live_dir)

    def save(self, epochs, trainer, best, live):
        if self.checkpoint:
            self.checkpoint.save(epochs, trainer, best, live.dir)

    def remove(self):
        if self.checkpoint:
            self.checkpoint.remove()
