"""Classify photos with a trained model: a table of file, P(dog) and label.

    python -m stages.predict PATH... [--model finetuned] [--out predictions.csv] [--tta N]

Not a DVC stage: the `predict` command, from the project root (installed, the same
command is `dogs-vs-cats-predict`; the code is dogs_vs_cats/cli.py and predict.py).
PATH is an image, a folder (searched recursively for .jpg, .jpeg, .png, .bmp, .gif,
.webp, .tif and .tiff files) or a zip archive of images. `--tta N` averages P(dog) over
N views of each image (the image, its mirror, then crops and their mirrors).
"""

import sys

from dogs_vs_cats.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m stages.predict"))
