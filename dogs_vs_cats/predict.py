"""Classify photos with a trained model: P(dog) per image, from files, folders or zips.

Each image is checked and converted the way `split` does it (a PNG named .jpg,
grayscale, CMYK: converted; empty, corrupt, too large: skipped with the reason) and
resized the way training does it, to the model's own input size. Images stream through
in batches: memory does not grow with their number. Test-time augmentation averages
P(dog) over views of each image (the image, its mirror, then crops and their mirrors).
The command line is `dogs_vs_cats.cli` (`python -m stages.predict`, `dogs-vs-cats-predict`).
"""

import csv
import errno
import os
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from itertools import islice
from pathlib import Path, PurePosixPath
from typing import NamedTuple, Optional

import numpy as np

from dogs_vs_cats import catalog
from dogs_vs_cats.archives import BadImage, check_image, MAX_MEMBER_BYTES, quiet_bomb_warnings, read_member
from dogs_vs_cats.calibration import read_temperature, scaled
from dogs_vs_cats.errors import not_a_file, StageError
from dogs_vs_cats.outputs import atomic_file, DEBRIS

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# Test-time augmentation views, in the order --tta takes them: (mirrored, crop box as
# top, left, bottom, right fractions or None for the whole image). Crops keep 7/8 of each side.
CROP = 7 / 8
TTA_VIEWS = [(mirror, box) for box in (None, (1 / 16, 1 / 16, 15 / 16, 15 / 16), (0, 0, CROP, CROP),
                                       (0, 1 - CROP, CROP, 1), (1 - CROP, 0, 1, CROP), (1 - CROP, 1 - CROP, 1, 1))
             for mirror in (False, True)]


class Prediction(NamedTuple):
    name: str                  # the file, or archive:member
    p_dog: Optional[float]     # None when skipped
    reason: Optional[str]      # why it was skipped

    @property
    def label(self):
        return None if self.p_dog is None else ("dog" if self.p_dog > 0.5 else "cat")


def model_file(model):
    """A model's name in the catalog (finetuned, ...) or the path of a .keras file, as a path."""
    model = str(model)
    names = ", ".join(catalog.IMAGE_MODELS)
    if model.endswith(".keras"):
        path = Path(model)
        trained_by = next((entry.stage for entry in catalog.MODELS if entry.file == path), None)
    elif model in catalog.IMAGE_MODELS:
        path, trained_by = catalog.model(model).file, catalog.model(model).stage
    elif Path(model).exists():
        raise StageError(f"--model {model} is not a .keras file: give a model saved by Keras 3 as .keras, "
                         f"or one of {names}")
    else:
        raise StageError(f"model {model} not found: use one of {names} or the path of a .keras file")
    if not path.is_file():
        if trained_by and not Path("dvc.yaml").is_file():  # the catalog's paths are the project's
            raise StageError(f"{path} not found in {Path.cwd()}, which is not the project root: run predict "
                             f"from the project root, or give --model the path of the .keras file")
        if trained_by and not path.exists():
            raise StageError(f"{path} not found: run `dvc repro {trained_by}` (or `dvc pull {path}`) first")
        raise StageError(f"--model {path} {not_a_file(path)}: use one of {names} or the path of a .keras file")
    return path, trained_by


def load_classifier(model):
    """The Keras model behind --model, checked to take images."""
    import keras
    path, trained_by = model_file(model)
    try:
        classifier = keras.models.load_model(path)
    except Exception as e:
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        if not zipfile.is_zipfile(path):
            reason = "not a zip archive, which a .keras file is"
        fix = f"rebuild it with `dvc repro {trained_by}`" if trained_by else "give a model saved by Keras 3 as .keras"
        raise StageError(f"{path} could not be loaded as a Keras model ({reason}): {fix}") from None
    shape = classifier.input_shape
    if len(shape) != 4 or shape[-1] != 3 or shape[1] != shape[2] or shape[1] is None:
        raise StageError(f"{path} takes inputs of shape {shape[1:]}, not square RGB images: "
                         f"use one of {', '.join(catalog.IMAGE_MODELS)}")
    # A diverged training leaves NaN weights, which give NaN for every picture: refused here,
    # before any work (a look at the weights, no model call), rather than written as P(dog)
    # nan and the label "cat" for each; `classify` refuses any other output that is not finite.
    if not all(np.isfinite(weights).all() for weights in classifier.get_weights()):
        retrain = f"`dvc repro {trained_by}`" if trained_by else "train it again"
        raise StageError(f"{path} holds weights that are not finite (NaN or infinite), so its outputs are not "
                         f"either: its training diverged; retrain it with a lower learning rate ({retrain})")
    return classifier


def folder_images(folder):
    """(path, None) for every image file under `folder`, or (path, why) for an image name
    that is no readable file (a FIFO, a broken link). Linked folders are followed, each
    real folder once (a link loop ends); temporaries of this or another run (`--out`
    inside the folder) are not pictures."""
    found, seen = [], set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        for name in files:
            path = Path(root) / name
            if path.suffix.lower() not in IMAGE_SUFFIXES or DEBRIS.fullmatch(name):
                continue
            found.append((path, None if path.is_file() else _not_readable(path)))
    return sorted(found)


def _not_readable(path):
    """Why `path`, an image name that is no regular file, cannot be read."""
    try:
        path.stat()
    except FileNotFoundError:
        return "a broken link (what it points to does not exist)"
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a symbolic link loop (the link points back to itself)"
        return f"unreadable ({e.strerror})"
    return "not a regular file (a FIFO or a device)"


def _zip_images(archive):
    """The image members of a zip, and the zips inside it (read as skipped: they are not opened)."""
    return sorted((info for info in archive.infolist() if not info.is_dir()
                   and PurePosixPath(info.filename).suffix.lower() in IMAGE_SUFFIXES | {".zip"}),
                  key=lambda info: info.filename)


NESTED_ZIP = "a zip inside the zip: extract it (`unzip {archive} {member}`) and give it to predict"


def count_sources(paths):
    """How many images `paths` hold, for the progress bar (drawn from 200 on), from the
    folder listings and the zips' directories: nothing is read or decoded."""
    total = 0
    for path in map(Path, paths):
        if path.is_dir():
            total += len(folder_images(path))
        elif path.suffix.lower() == ".zip" and path.is_file():  # a FIFO would block
            try:
                with zipfile.ZipFile(path) as archive:
                    total += len(_zip_images(archive))
            except (zipfile.BadZipFile, OSError):
                pass  # image_sources says what is wrong with it
        else:
            total += 1
    return total


def image_sources(paths):
    """(name, bytes, None) or (name, None, why it cannot be read) for every image of `paths`,
    in order, read one at a time as they are asked for."""
    for path in map(Path, paths):
        if path.is_dir():
            for file, why in folder_images(path):
                yield (str(file), None, why) if why else read_source(str(file), partial(_read_file, file))
        elif path.suffix.lower() == ".zip" and path.is_file():  # a FIFO would block
            yield from _zip_sources(path)
        elif path.is_file():
            yield read_source(str(path), partial(_read_file, path))
        else:
            raise StageError(f"{path} {not_a_file(path)}: give an image, a folder of images or a zip archive")


def _read_file(path):
    try:
        if path.stat().st_size > MAX_MEMBER_BYTES:
            raise BadImage(f"too large: more than {MAX_MEMBER_BYTES:,} bytes")
        return path.read_bytes()
    except OSError as e:
        raise BadImage(f"unreadable ({e.strerror or e})") from None


def _zip_sources(path):
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise StageError(f"{path} is not a readable zip archive ({e}): re-download or re-zip it") from None
    with archive:
        for info in _zip_images(archive):
            name = f"{path}:{info.filename}"
            if info.filename.lower().endswith(".zip"):
                yield name, None, NESTED_ZIP.format(archive=path, member=info.filename)
            else:
                yield read_source(name, partial(read_member, archive, info))


def _prepare(item, size):
    """(name, bytes or None, reason) -> (name, size x size x 3 uint8 image or None, reason or None)."""
    from dogs_vs_cats.images import decode
    name, data, reason = item
    if data is None:
        return name, None, reason
    try:
        jpeg, _ = check_image(data)
    except BadImage as e:
        return name, None, str(e)
    return name, decode(jpeg, size).numpy().astype(np.uint8), None


def read_source(name, read):
    """(name, read()'s bytes, None), or (name, None, why) when read() raises BadImage."""
    try:
        return name, read(), None
    except BadImage as e:
        return name, None, str(e)


def tta_views(images, count):
    """The first `count` views of a float32 batch (N x S x S x 3), each N x S x S x 3."""
    import tensorflow as tf
    if not 1 <= count <= len(TTA_VIEWS):
        raise StageError(f"TTA takes 1 to {len(TTA_VIEWS)} views, not {count}")
    size = images.shape[1:3]
    views = []
    for mirror, box in TTA_VIEWS[:count]:
        view = images
        if box is not None:
            boxes = tf.constant([box] * len(images), tf.float32)
            view = tf.image.crop_and_resize(images, boxes, tf.range(len(images)), size)
        views.append(tf.reverse(view, axis=[2]) if mirror else view)
    return views


def predict_batch(classifier, images, tta=1):
    """P(dog) of each image of a uint8 batch: the mean over `tta` views."""
    batch = images.astype(np.float32)
    outputs = [np.asarray(classifier.predict_on_batch(view), np.float64).reshape(len(batch))
               for view in tta_views(batch, tta)]
    return np.mean(outputs, axis=0)


def model_temperature(model):
    """The temperature `evaluate` fitted for `model` (a catalog name or a .keras file), kept
    beside it; 1 (P(dog) as the model gives it) where none is."""
    return read_temperature(model_file(model)[0])


def classify(sources, classifier, batch_size=32, tta=1, total=None, desc="predict", temperature=1.0):
    """Yield a Prediction per source ((name, bytes, None) or (name, None, why), as
    `image_sources` gives them), in order, `batch_size` images at a time; P(dog) with its
    logit divided by `temperature` (`model_temperature`)."""
    from tqdm import tqdm
    size = classifier.input_shape[1]
    sources = iter(sources)
    with ThreadPoolExecutor() as pool, tqdm(total=total, desc=desc, unit="img", file=sys.stderr,
                                            disable=total is not None and total < 200, mininterval=2) as bar:
        while chunk := list(islice(sources, batch_size)):
            # Reading stays in this thread (a zip is not thread-safe); decoding runs in the pool.
            with quiet_bomb_warnings():
                prepared = list(pool.map(lambda item: _prepare(item, size), chunk))
            good = [image for _, image, _ in prepared if image is not None]
            probabilities = iter(scaled(predict_batch(classifier, np.stack(good), tta), temperature) if good else [])
            for name, image, reason in prepared:
                p_dog = None if image is None else float(next(probabilities))
                if p_dog is not None and not np.isfinite(p_dog):
                    raise StageError(f"the model gives P(dog) {p_dog} for {one_line(name)}, not a probability: its "
                                     f"training diverged; retrain it with a lower learning rate")
                yield Prediction(name, p_dog, reason)
            bar.update(len(chunk))


def utf8_text(text):
    """`text` as valid UTF-8: the bytes of a file name that are not UTF-8 (which Python holds
    as surrogates, its surrogateescape) written as `\\xff`, so any UTF-8 reader reads the CSV."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def one_line(text):
    """`text` as utf8_text, with control characters escaped too (a newline as `\\n`): one file
    is one line of the table, and a name cannot move the terminal's cursor."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in utf8_text(text))


def write_csv(predictions, out):
    """Stream predictions to `out` (written under a temporary name, renamed at the end), in
    UTF-8; a newline or a comma in a name is quoted as CSV does (`csv` module)."""
    with atomic_file(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "p_dog", "label", "skipped"])
        for prediction in predictions:
            p_dog = "" if prediction.p_dog is None else f"{prediction.p_dog:.6f}"
            writer.writerow([utf8_text(prediction.name), p_dog, prediction.label or "",
                             utf8_text(prediction.reason or "")])
            yield prediction
