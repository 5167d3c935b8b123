"""Classify photos with a trained model: a table of file, P(dog) and label.

    python -m stages.predict PATH... [--model finetuned] [--out predictions.csv] [--tta N]

Not a DVC stage: the `predict` command, from the project root (installed, the same
command is `dogs-vs-cats-predict`; the code is dogs_vs_cats/cli.py and predict.py).
PATH is an image, a folder (searched recursively for .jpg, .jpeg, .png, .bmp, .gif,
.webp, .tif and .tiff files) or a zip archive of images. `--tta N` averages P(dog) over
N views of each image (the image, its mirror, then crops and their mirrors).
"""

import signal
import sys

from dogs_vs_cats.cli import main

if __name__ == "__main__":
    # Python's own handlers again, instead of the start-up ones of stages/__init__.py:
    # main() cleans up after Ctrl-C (KeyboardInterrupt) and installs its SIGTERM handling.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.exit(main(prog="python -m stages.predict"))
