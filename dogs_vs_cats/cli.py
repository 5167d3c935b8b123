"""The `predict` command: classify photos with a trained model, a table of file, P(dog) and label.

    dogs-vs-cats-predict PATH... [--model finetuned] [--out predictions.csv] [--tta N]
    python -m stages.predict PATH...          (the same, from the project root)

PATH is an image, a folder (searched recursively for .jpg, .jpeg, .png, .bmp, .gif,
.webp, .tif and .tiff files) or a zip archive of images. Each image is checked and
converted the way `split` does it (a PNG named .jpg, grayscale, CMYK: converted; empty,
corrupt, too large: skipped with the reason) and resized the way training does it, to
the model's own input size. Images stream through in batches: memory does not grow
with their number. `--tta N` averages P(dog) over N views of each image (the image, its
mirror, then crops and their mirrors).
"""

import argparse
import os
import signal
import sys
from pathlib import Path

from dogs_vs_cats.calibration import calibration_file
from dogs_vs_cats.catalog import IMAGE_MODELS
from dogs_vs_cats.errors import not_a_file, StageError
from dogs_vs_cats.outputs import check_writable, sweep_debris, write_target
from dogs_vs_cats.predict import (
    classify,
    count_sources,
    folder_images,
    image_sources,
    IMAGE_SUFFIXES,
    load_classifier,
    model_file,
    model_temperature,
    one_line,
    TTA_VIEWS,
    write_csv,
)
from dogs_vs_cats.quiet import quiet_tensorflow
from dogs_vs_cats.stage import Terminated


def _terminate(signum, frame):
    raise Terminated()


def _emit(line):
    """Print a line of the table; False once its reader went away (`| head -1`). What is left
    then goes nowhere, so neither Python's flush at exit nor the next line raises
    BrokenPipeError, and --out is still written in full."""
    try:
        print(line, flush=True)
        return True
    except BrokenPipeError:
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):  # not a real file (a test's capture)
            pass
        sys.stdout = open(os.devnull, "w")
        return False


def table_line(prediction, width):
    name = one_line(prediction.name)  # any name the file system allows, as one printable line
    if prediction.p_dog is None:
        return f"{name:<{width}}  {'-':>6}  skipped: {one_line(prediction.reason)}"
    return f"{name:<{width}}  {prediction.p_dog:6.4f}  {prediction.label}"


def arguments(argv, prog="dogs-vs-cats-predict"):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", metavar="PATH", help="an image, a folder of images or a zip archive")
    parser.add_argument("--model", default="finetuned",
                        help=f"{', '.join(IMAGE_MODELS)} (models/<name>.keras) or a .keras file (default: finetuned)")
    parser.add_argument("--out", help="also write the table as CSV (file,p_dog,label,skipped)")
    parser.add_argument("--tta", type=int, default=1, choices=range(1, len(TTA_VIEWS) + 1), metavar="N",
                        help=f"test-time augmentation: mean P(dog) over N views, 1-{len(TTA_VIEWS)} (default 1: none)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per model call (default 32)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    return args


def out_problem(out, inputs):
    """Why --out cannot be written, before any work: empty, a folder, a socket, under a file,
    one of the inputs, inside an input folder, or one of the pictures a folder holds
    through a link (the table would replace a picture)."""
    if out is None:
        return None
    path = Path(out)
    if not out:
        return "--out is empty: give the path of a .csv file, or leave --out out to print the table only"
    if path.is_dir():
        return f"--out {out} is a folder: give a file in it, such as {path / 'predictions.csv'}"
    parent = next((folder for folder in path.parents if folder.exists()), None)
    if parent is not None and not parent.is_dir():
        return f"--out {out} is under {parent}, which is a file, not a folder: give another path"
    try:
        kind, _ = write_target(path)
    except StageError as e:
        return f"--out {e}"
    if kind == "stream":  # /dev/stdout, a FIFO: written into, nothing is replaced
        return None
    resolved = Path(os.path.realpath(path))
    for given in map(Path, inputs):
        if given.is_dir() and resolved.is_relative_to(os.path.realpath(given)):
            return (f"--out {out} is inside the input folder {given}, where it could replace a picture: "
                    f"give a path outside it")
    pictures = [file for given in map(Path, inputs) if given.is_dir() for file, _ in folder_images(given)]
    if resolved.exists() and any(Path(file).exists() and resolved.samefile(file)
                                 for file in [*inputs, *pictures]):
        return f"--out {out} is one of the inputs and would be overwritten: give another path for the table"
    return None


def main(argv=None, prog="dogs-vs-cats-predict"):
    quiet_tensorflow()  # before load_classifier imports TensorFlow
    args = arguments(sys.argv[1:] if argv is None else argv, prog)
    for path in args.paths:
        if not (Path(path).is_file() or Path(path).is_dir()):
            print(f"error: {path} {not_a_file(Path(path))}: give an image, a folder of images or a zip archive",
                  file=sys.stderr)
            return 2
    problem = out_problem(args.out, args.paths)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    previous = signal.signal(signal.SIGTERM, _terminate)  # `kill`, `timeout`: clean up as Ctrl-C does
    predictions = iter(())
    try:
        if args.out:
            kind, written = write_target(args.out)  # a link's target is what is written
            if kind == "file":
                sweep_debris([written])  # the temporaries killed runs left beside it
            check_writable([args.out])
        classifier = load_classifier(args.model)
        temperature = model_temperature(args.model)
        if temperature != 1:
            print(f"P(dog) calibrated with the temperature {temperature:g} fitted on the validation photos "
                  f"({calibration_file(model_file(args.model)[0])})", file=sys.stderr)
        total = count_sources(args.paths)
        predictions = classify(image_sources(args.paths), classifier, args.batch_size, args.tta, total,
                               temperature=temperature)
        if args.out:
            predictions = write_csv(predictions, args.out)
        width = 40
        printing = _emit(f"{'file':<{width}}  {'P(dog)':>6}  label")
        classified = skipped = 0
        for prediction in predictions:
            printing = printing and _emit(table_line(prediction, width))
            if not (printing or args.out):
                return 0  # nobody reads the table and no file waits for it
            classified += prediction.p_dog is not None
            skipped += prediction.p_dog is None
    except StageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Terminated:
        print("terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if hasattr(predictions, "close"):
            predictions.close()  # an unfinished --out: its temporary is removed now
        signal.signal(signal.SIGTERM, previous)
    print(f"{classified} images classified, {skipped} skipped" + (f"; wrote {args.out}" if args.out else ""),
          file=sys.stderr)
    if not classified:  # an empty folder, a zip of zips, only unreadable files: not a success
        what = "no image could be classified (the reasons are above)" if skipped else (
            f"no images in {' '.join(args.paths)} (files named {', '.join(sorted(IMAGE_SUFFIXES))})")
        print(f"error: {what}: give images, a folder of images or a zip of images", file=sys.stderr)
        return 1
    return 0
