"""The DVC stages: one thin entry point each, `python -m stages.<name> PATH...` as dvc.yaml
says, plus `predict`. Importing this package first, before TensorFlow, keeps its start-up
chatter off the log (dogs_vs_cats.quiet) and makes a SIGTERM or Ctrl-C during start-up one
line, with the outputs DVC deleted put back from its cache (standard library only)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from dogs_vs_cats.quiet import FilteredStderr, quiet_tensorflow

# Restoring imports DVC: never from a signal handler that may have interrupted an import.
RESTORE = "from dogs_vs_cats.stage import restore_under_dvc; restore_under_dvc()"


def _interrupted_at_start(signum, frame):
    FilteredStderr.restore()  # the terminal's stderr back, if TensorFlow was loading
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut the restore short
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.environ.get("DVC_STAGE"):
        project = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (project, os.environ.get("PYTHONPATH")))))
        # A session of its own: a second Ctrl-C sent to the terminal's process group does not reach it.
        subprocess.run([sys.executable, "-c", RESTORE], env=env, start_new_session=True)
    terminated = signum == signal.SIGTERM
    print(f"{'terminated' if terminated else 'interrupted'} while starting: nothing was written", file=sys.stderr,
          flush=True)
    os._exit(143 if terminated else 130)  # no traceback from the import this signal cut short


# `python -m` sets sys.argv[0] to "-m" while it imports the package; an `import stages`
# (a test, the predict command's library use) keeps the caller's handlers.
if sys.argv[:1] == ["-m"]:
    signal.signal(signal.SIGTERM, _interrupted_at_start)
    signal.signal(signal.SIGINT, _interrupted_at_start)
    quiet_tensorflow()
