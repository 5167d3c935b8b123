"""TensorFlow's start-up chatter kept off the terminal, for the stages, `predict` and the
benchmarks (docs/running.md#the-log): a user reads DVC's lines, the progress bars, the
project's own messages and real warnings. Standard library only: it runs before
TensorFlow is imported.

`DOGS_VS_CATS_VERBOSE=1`, or `TF_CPP_MIN_LOG_LEVEL=0` set by the user, leaves TensorFlow's
logging as it is, for debugging.
"""

import importlib.abc
import importlib.machinery
import os
import re
import sys
import threading
from pathlib import Path

VERBOSE = "DOGS_VS_CATS_VERBOSE"
# TensorFlow's own INFO and WARNING lines go (oneDNN, the CPU instructions, ...); its errors stay.
LEVEL = "2"
# What TensorFlow's native libraries print while they load, before TF_CPP_MIN_LOG_LEVEL
# applies (absl writes every line to stderr until it is initialised): informational only.
START_UP = re.compile(rb"(WARNING: All log messages before absl::InitializeLog\(\)|I\d{4} \S+ +\d+ \S+\] )")
# cuInit's failure, logged as an ERROR, means nothing where no NVIDIA driver is loaded: there
# is no GPU to find. With a driver it is a real problem, and shown.
NO_DRIVER = re.compile(rb"E\d{4} .*failed call to cuInit")


def nvidia_driver():
    return Path("/proc/driver/nvidia").exists()


def verbose():
    return os.environ.get(VERBOSE, "") not in ("", "0") or os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0"


def quiet_tensorflow():
    """Call before TensorFlow is imported: sets TF_CPP_MIN_LOG_LEVEL (a user's value wins),
    and filters stderr while TensorFlow loads and finds its devices."""
    if verbose():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", LEVEL)
    if sys.stderr is None:  # no stderr at all (file descriptor 2 closed): nothing to filter
        return
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietStart) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietStart())


class _QuietStart(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as Python would, and runs its import with stderr filtered."""

    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: the import itself must not come back here
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            with FilteredStderr():
                load(module)
                # Device discovery is where cuInit runs: here, inside the filter, rather
                # than at the stage's first operation.
                module.config.list_physical_devices()
        spec.loader.exec_module = exec_module
        return spec


class FilteredStderr:
    """File descriptor 2 (what C++ and Python write to) through a pipe whose lines are passed
    on as they come, but for TensorFlow's start-up lines. `restore()` ends it at once (a
    signal handler about to exit calls it, so that its own message and anything still in
    the pipe are written)."""

    active = None

    def __enter__(self):
        sys.stderr.flush()
        self.saved = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self.forwarder = threading.Thread(target=self._forward, args=(read,), daemon=True)
        self.forwarder.start()
        FilteredStderr.active = self
        return self

    def __exit__(self, *exc):
        self.restore()

    def _forward(self, read):
        no_driver = not nvidia_driver()
        with open(read, "rb") as pipe:
            for line in pipe:
                if not (START_UP.match(line) or (no_driver and NO_DRIVER.match(line))):
                    os.write(self.saved, line)

    @classmethod
    def restore(cls):
        self, cls.active = cls.active, None
        if self is None:
            return
        sys.stderr.flush()
        os.dup2(self.saved, 2)  # the pipe loses its last writer: the forwarder reads to its end
        self.forwarder.join()
        os.close(self.saved)
