"""Training's augmentation against the book's: ImageDataGenerator, the old Keras layer stack, RandomAffine.

    python -m bench.augmentation [--data ARCHIVE] [--photos 32] [--draws 16] [--figure docs/augmentation.png]

The reference is Listing 5.14's ImageDataGenerator (rotation 40, shifts 0.2, shear 0.2, zoom 0.2,
horizontal flip, fill nearest) on tf_keras, in a child process (the bench extras: `make bench`).
"Keras layer stack" is what training ran before dogs_vs_cats.augment: RandomFlip, RandomRotation,
RandomTranslation, RandomShear, RandomZoom, each resampling, all given seed 42 as trained.
"RandomAffine" is dogs_vs_cats.augment.augmentation(params, seed=42): one transform, one resampling.

Each makes --draws passes over the first --photos/2 cats and dogs of --data (default: the 200 px
photos in ../shared, read from the zip in place; synthetic textured images when absent) at 150 px,
one transform at a time, then all together. The markdown table printed gives the mean
|augmented - original| (0..255, ± standard error); for "all", the blur (mean |Laplacian| of the
grey image, augmented / original: < 1 is blurrier); and the median ms per batch of 32 at 150 px
in a tf.function. tf_keras applies height_shift_range along the width and width_shift_range
along the height, so each shift row compares the same axis. --figure: 16 augmentations of the
first photo by each.
"""

import argparse
import io
import json
import math
import subprocess
import sys
import tempfile
import time
import zipfile
from functools import partial
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared/data/dogs-vs-cats-200px/train.zip"
SIZE, SEED, BATCH = 150, 42, 32
BOOK = {"rotation": 40, "width_shift": 0.2, "height_shift": 0.2, "shear": 0.2, "zoom": 0.2, "horizontal_flip": True}
TRANSFORMS = {"rotation": {"rotation": 40}, "width shift": {"width_shift": 0.2}, "height shift": {"height_shift": 0.2},
              "shear": {"shear": 0.2}, "zoom": {"zoom": 0.2}, "flip": {"horizontal_flip": True}, "all": BOOK}
NAMES = ("ImageDataGenerator", "Keras layer stack", "RandomAffine")


def laplacian_energy(images):
    """Mean |4-neighbour Laplacian| of the grey image, per image of (N, H, W, 3)."""
    g = images @ np.array([0.299, 0.587, 0.114])
    lap = 4 * g[:, 1:-1, 1:-1] - g[:, :-2, 1:-1] - g[:, 2:, 1:-1] - g[:, 1:-1, :-2] - g[:, 1:-1, 2:]
    return np.abs(lap).mean(axis=(1, 2))


def change(originals, augmented):
    """Per image of two (N, H, W, 3) batches, 0..255: mean |difference| and the Laplacian ratio."""
    o, a = originals.astype(np.float64), augmented.astype(np.float64)
    return {"pixel": np.abs(a - o).mean(axis=(1, 2, 3)), "blur": laplacian_energy(a) / laplacian_energy(o)}


def measure(augment, photos, draws):
    """`draws` passes of augment (a batch -> its augmentations) over the photos, as epochs make them:
    ({"pixel"|"blur": (mean, standard error)}, the first photo's augmentations)."""
    outs = [np.asarray(augment(photos.astype("float32"))) for _ in range(draws)]
    values = [change(photos, out) for out in outs]
    return ({key: summary(np.concatenate([v[key] for v in values])) for key in ("pixel", "blur")},
            np.stack([out[0] for out in outs]))


def summary(values):
    """The mean and its standard error."""
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))


def table_rows(make_augment, photos, draws):
    """{transform: measure's figures} of the augment functions make_augment(params) makes, and the
    first photo's augmentations by all transforms together (the figure's tiles)."""
    rows = {name: measure(make_augment(params), photos, draws) for name, params in TRANSFORMS.items()}
    return {name: figures for name, (figures, _) in rows.items()}, rows["all"][1]


def keras_layer_stack(params, seed=SEED):
    """The augmentation training ran before RandomAffine: a layer per transform, one seed for all."""
    import keras
    layers = []
    if params.get("horizontal_flip"):
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if params.get("rotation"):
        layers.append(keras.layers.RandomRotation(params["rotation"] / 360, fill_mode="nearest", seed=seed))
    if params.get("width_shift") or params.get("height_shift"):
        layers.append(keras.layers.RandomTranslation(params.get("height_shift", 0), params.get("width_shift", 0),
                                                     fill_mode="nearest", seed=seed))
    if params.get("shear"):
        layers.append(keras.layers.RandomShear(math.tan(math.radians(params["shear"])), 0.0,
                                               fill_mode="nearest", seed=seed))
    if params.get("zoom"):
        layers.append(keras.layers.RandomZoom(params["zoom"], fill_mode="nearest", seed=seed))
    return keras.Sequential(layers, name="keras_layer_stack")


def idg_kwargs(params):
    """ImageDataGenerator's arguments for the project's params, each shift on the axis it names."""
    p = dict({"rotation": 0, "width_shift": 0.0, "height_shift": 0.0, "shear": 0.0, "zoom": 0.0}, **params)
    return dict(rotation_range=p["rotation"], width_shift_range=p["height_shift"], height_shift_range=p["width_shift"],
                shear_range=p["shear"], zoom_range=p["zoom"], horizontal_flip=bool(p.get("horizontal_flip")),
                fill_mode="nearest")


def child_idg(folder, draws):
    """ImageDataGenerator.random_transform image by image, as flow_from_directory calls it."""
    try:
        import tf_keras
    except ImportError:
        sys.exit("error: ImageDataGenerator needs tf_keras (Keras 2): run `make bench`, which installs it")

    def make_augment(params):
        generator = tf_keras.preprocessing.image.ImageDataGenerator(**idg_kwargs(params))
        return lambda x: np.stack([generator.random_transform(image) for image in x])
    np.random.seed(SEED)
    rows, first = table_rows(make_augment, np.load(folder / "photos.npy"), draws)
    np.save(folder / "first.npy", first)
    return rows


def load_photos(archive, count):
    """The first count/2 cats and dogs of a Kaggle-style train.zip, resized as the project does: uint8."""
    from dogs_vs_cats.images import decode
    with zipfile.ZipFile(archive) as z:
        names = [f"train/{kind}.{i}.jpg" for kind, n in (("cat", (count + 1) // 2), ("dog", count // 2))
                 for i in range(n)]
        return np.stack([decode(z.read(name), SIZE).numpy() for name in names]).astype("uint8")


def synthetic_photos(count, size=SIZE):
    """Textured stand-ins: coloured gratings of random frequency, a disc and pixel noise."""
    rng = np.random.default_rng(0)
    y, x = (np.mgrid[:size, :size, :3][:2] / size)[:, None]  # (1, size, size, 3) each
    fx, fy, phase = rng.uniform(2, 20, (count, 1, 1, 3)), rng.uniform(2, 20, (count, 1, 1, 3)), rng.uniform(0, 6, 3)
    photos = 120 + 60 * np.sin(2 * np.pi * (fx * x + fy * y) + phase) + 50 * ((x - 0.4) ** 2 + (y - 0.55) ** 2 < 0.06)
    return np.clip(np.round(photos + rng.normal(0, 8, photos.shape)), 0, 255).astype("uint8")


def median_ms(layers, photos, repeats):
    """{name: median ms per batch of BATCH images} of each layer in a tf.function, taking turns."""
    import tensorflow as tf
    x = tf.constant(np.resize(photos, (BATCH, *photos.shape[1:])).astype("float32"))
    runs = {name: tf.function(partial(layer, training=True)) for name, layer in layers.items()}
    times = {name: [] for name in runs}
    for run in [*runs.values()] * 3:  # trace and warm up
        run(x).numpy()
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run(x).numpy()
            times[name].append(1000 * (time.perf_counter() - started))
    return {name: float(np.median(t)) for name, t in times.items()}


def figure(tiles, path, what):
    """Each augmentation's first 16 tiles in a 4 x 4 grid, side by side; a 256-colour PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image
    titles = ["ImageDataGenerator (tf_keras), the book's\none transform, resampled once",
              "Keras layer stack, seed 42 for every layer\nFlip, Rotation, Translation, Shear, Zoom",
              "RandomAffine, seed 42\none transform, resampled once"]
    fig = plt.figure(figsize=(15, 5.6))
    outer = fig.add_gridspec(1, 3, wspace=0.06)
    for k, name in enumerate(NAMES):
        fig.add_subplot(outer[k], frame_on=False, xticks=[], yticks=[]).set_title(titles[k], fontsize=11, pad=8)
        inner = outer[k].subgridspec(4, 4, wspace=0.03, hspace=0.03)
        for i, tile in enumerate(tiles[name][:16]):
            fig.add_subplot(inner[i // 4, i % 4], xticks=[], yticks=[]).imshow(np.clip(tile, 0, 255).astype("uint8"))
    fig.suptitle(f"Augmentations of {what}: rotation 40°, shifts 0.2, shear 0.2°, zoom 0.2, horizontal flip, "
                 "fill nearest", fontsize=12, y=1.03)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100, bbox_inches="tight")
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.open(buffer).convert("RGB").quantize(256).save(path, optimize=True)


def print_table(rows, times):
    print("| transform | ImageDataGenerator | Keras layer stack | RandomAffine | stack / IDG | RandomAffine / IDG |\n"
          "|---|---:|---:|---:|---:|---:|")
    for t in TRANSFORMS:
        idg, stack, affine = (rows[name][t]["pixel"] for name in NAMES)
        print(f"| {t} | " + " | ".join(f"{mean:.2f} ± {se:.2f}" for mean, se in (idg, stack, affine))
              + f" | {stack[0] / idg[0]:.3f} | {affine[0] / idg[0]:.3f} |")
    blur = [rows[name]["all"]["blur"][0] for name in NAMES]
    print("| blur, all: Laplacian / original | " + " | ".join(f"{b:.3f}" for b in blur)
          + f" | {blur[1] / blur[0]:.3f} | {blur[2] / blur[0]:.3f} |")
    print(f"| ms per batch of {BATCH} at {SIZE} px (median) | - | {times['Keras layer stack']:.1f} | "
          f"{times['RandomAffine']:.1f} | | |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="Kaggle train.zip-style archive, read in place")
    parser.add_argument("--photos", type=int, default=32, help="photos, half cats and half dogs")
    parser.add_argument("--draws", type=int, default=16, help="augmentations of each photo per transform")
    parser.add_argument("--figure", type=Path, default=REPO / "docs/augmentation.png")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_idg(args.child, args.draws)))
        return

    from dogs_vs_cats.augment import augmentation
    real = args.data.is_file()
    photos = load_photos(args.data, args.photos) if real else synthetic_photos(args.photos)
    print(f"{len(photos)} photos of {args.data if real else 'synthetic textures: no ' + str(args.data)}, "
          f"{SIZE} px, {args.draws} draws each", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "photos.npy", photos)
        child = [sys.executable, "-m", "bench.augmentation", "--child", tmp, "--draws", str(args.draws)]
        done = subprocess.run(child, cwd=REPO, capture_output=True, text=True)  # quiet as bench/__init__.py makes it
        if done.returncode:
            sys.exit(f"{done.stderr[-3000:]}\nerror: the ImageDataGenerator measurement failed")
        rows = {"ImageDataGenerator": json.loads(done.stdout.strip().splitlines()[-1])}
        tiles = {"ImageDataGenerator": np.load(Path(tmp) / "first.npy")}
    makers = {"Keras layer stack": keras_layer_stack, "RandomAffine": lambda params: augmentation(params, SEED)}
    for name, make in makers.items():
        rows[name], tiles[name] = table_rows(lambda params, make=make: partial(make(params), training=True), photos,
                                             args.draws)
    times = median_ms({name: make(BOOK) for name, make in makers.items()}, photos, repeats=20)
    figure(tiles, args.figure, "cat.0, 150 px" if real else "a synthetic image")
    print(f"\nmean |augmented - original| (0..255) ± standard error; figure: {args.figure}\n")
    print_table(rows, times)


if __name__ == "__main__":
    main()
