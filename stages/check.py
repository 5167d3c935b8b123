"""Stage `check`: params.yaml and the files it names, verified before DVC touches any output.

    python -m stages.check OUTPUT     (dvc.yaml: data/checked.txt)

Every other stage depends on OUTPUT, so DVC runs `check` first whenever params.yaml or
the schema changed, and stops there when it fails: DVC deletes a stage's outputs before
running its command, so a bad value found by the stage itself would come too late.
OUTPUT always holds the same line, so a passing check re-runs nothing below it.
Checked: every key of params.yaml against the schema (docs/params.md), and each file a
param names (data.archive, submission.archive, base.weights as a path, mnist.npz as a
path): present, a regular file, not a folder, and no other stage's output (the sample's
archives excepted). An empty or null data.archive is named here in one line; DVC itself
cannot read dvc.yaml then and says only "ERROR: unexpected error".
"""

import os

from dogs_vs_cats.check import check, PASSED
from dogs_vs_cats.errors import StageError
from dogs_vs_cats.outputs import atomic_file
from dogs_vs_cats.stage import run

# `dvc exp run -S key=value` writes the value into params.yaml before the stages run, and
# leaves it there when a stage fails.
UNDO = "; the value stays in params.yaml after `dvc exp run -S`: fix it, or undo it with `git checkout params.yaml`"


def main(output):
    try:
        check()
    except StageError as e:
        raise StageError(f"{e}{UNDO if os.environ.get('DVC_STAGE') else ''}") from None
    with atomic_file(output) as tmp:
        tmp.write_text(PASSED)
    print("check: params.yaml and the files it names are usable")


if __name__ == "__main__":
    run(main, outputs=("OUTPUT",))
