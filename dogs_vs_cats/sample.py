"""Synthetic stand-ins for Kaggle's `train.zip` and `test1.zip`, generated from a seed.

Each picture is a cartoon cat or dog head on a cluttered background. The classes
differ in a combination of cues (ear shape, muzzle, eyes, whiskers, head shape), and
every cue is noisy: some dogs have upright ears, some cats a rounder face, fur colours
and backgrounds are shared, heads turn, shrink and get partly hidden. A convnet can
learn it; a single pixel statistic cannot. test1.zip holds `test_images` unlabelled
pictures, test1/1.jpg, test1/2.jpg, ..., each a cat or a dog drawn by its seed, as
Kaggle's test set is laid out.
"""

import io
import math
import multiprocessing
import os
import zipfile

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from dogs_vs_cats.catalog import CLASSES
from dogs_vs_cats.outputs import atomic_file

TEST_INDEX_OFFSET = 10**7  # test pictures are drawn with indices no train picture uses
# A fixed timestamp keeps the archive byte-identical from run to run.
ZIP_DATE = (2013, 9, 25, 0, 0, 0)

FUR = [(35, 32, 30), (235, 232, 225), (150, 95, 55), (215, 135, 60), (125, 125, 130),
       (225, 205, 165), (95, 65, 45), (185, 175, 160), (60, 55, 65)]


def _jitter(rng, colour, amount=25):
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


def _random_colour(rng):
    return tuple(int(c) for c in rng.integers(0, 256, 3))


def _ellipse(cx, cy, rx, ry, tilt=0.0, n=28):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = math.cos(tilt), math.sin(tilt)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


class _Pose:
    """Maps head-local coordinates (unit = head radius, y down) to the canvas."""

    def __init__(self, cx, cy, radius, angle):
        self.cx, self.cy, self.r = cx, cy, radius
        self.c, self.s = math.cos(angle), math.sin(angle)

    def __call__(self, points):
        p = np.asarray(points, dtype=float) * self.r
        x = self.cx + self.c * p[:, 0] - self.s * p[:, 1]
        y = self.cy + self.s * p[:, 0] + self.c * p[:, 1]
        return [(float(a), float(b)) for a, b in zip(x, y)]


def _background(rng, width, height):
    top, bottom = np.array(_random_colour(rng)), np.array(_random_colour(rng))
    ramp = np.linspace(0, 1, height)[:, None, None]
    image = top * (1 - ramp) + bottom * ramp + rng.normal(0, rng.uniform(2, 18), (height, width, 1))
    canvas = Image.fromarray(np.clip(np.broadcast_to(image, (height, width, 3)), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(2, 9)):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        x1, y1 = x0 + rng.uniform(10, width / 2), y0 + rng.uniform(10, height / 2)
        shape = rng.integers(3)
        if shape == 0:
            draw.rectangle([x0, y0, x1, y1], fill=_random_colour(rng))
        elif shape == 1:
            draw.ellipse([x0, y0, x1, y1], fill=_random_colour(rng))
        else:
            draw.line([x0, y0, x1, y1], fill=_random_colour(rng), width=int(rng.integers(2, 12)))
    return canvas


def _draw_head(draw, rng, kind, pose):
    fur = _jitter(rng, FUR[rng.integers(len(FUR))])
    inner = _jitter(rng, (230, 170, 170) if rng.random() < 0.7 else fur, 30)
    dark = _jitter(rng, (20, 18, 18), 15)
    # Ears first, so the head overlaps their base.
    pointy = rng.random() < (0.85 if kind == "cat" else 0.2)
    if pointy:
        spread, height = rng.uniform(0.35, 0.6), rng.uniform(0.75, 1.15) if kind == "cat" else rng.uniform(0.5, 0.8)
        width = rng.uniform(0.3, 0.45) if kind == "cat" else rng.uniform(0.45, 0.6)
        for side in (-1, 1):
            base_x = side * spread
            ear = [(base_x - width, -0.55), (base_x + side * 0.25, -0.6 - height), (base_x + width, -0.55)]
            draw.polygon(pose(ear), fill=fur)
            small = [(base_x - width * 0.5, -0.65), (base_x + side * 0.2, -0.55 - height * 0.7),
                     (base_x + width * 0.5, -0.65)]
            draw.polygon(pose(small), fill=inner)
    else:
        length = rng.uniform(0.6, 1.0)
        ear_colour = _jitter(rng, fur, 50)
        for side in (-1, 1):
            draw.polygon(
                pose(_ellipse(side * 1.0, -0.05 + length * 0.4, 0.3, length * 0.75, side * 0.3)), fill=ear_colour
            )

    # Head: cats rounder, dogs longer.
    stretch = rng.uniform(0.85, 1.05) if kind == "cat" else rng.uniform(1.0, 1.25)
    draw.polygon(pose(_ellipse(0, 0, 1.0, stretch, n=40)), fill=fur)

    eye_y = rng.uniform(-0.3, -0.1)
    eye_x = rng.uniform(0.3, 0.45)
    for side in (-1, 1):
        if kind == "cat":
            iris = _jitter(rng, [(120, 190, 60), (220, 190, 40), (90, 150, 200)][rng.integers(3)])
            draw.polygon(pose(_ellipse(side * eye_x, eye_y, 0.17, 0.11, side * 0.25)), fill=iris)
            draw.polygon(pose(_ellipse(side * eye_x, eye_y, 0.035, 0.1)), fill=dark)
        else:
            draw.polygon(pose(_ellipse(side * eye_x, eye_y, 0.11, 0.11)), fill=dark)
            draw.polygon(pose(_ellipse(side * eye_x + 0.03, eye_y - 0.03, 0.03, 0.03)), fill=(240, 240, 240))

    if kind == "cat":
        draw.polygon(pose([(-0.09, 0.18), (0.09, 0.18), (0, 0.3)]), fill=_jitter(rng, (220, 120, 130)))
        whisker = _jitter(rng, (240, 240, 240) if sum(fur) < 400 else (40, 40, 40))
        width = max(1, int(pose.r * 0.02))
        for side in (-1, 1):
            for k in range(rng.integers(2, 4)):
                line = [(side * 0.15, 0.3 + 0.06 * k), (side * rng.uniform(0.9, 1.3), 0.2 + 0.12 * k)]
                draw.line(pose(line), fill=whisker, width=width)
    else:
        muzzle = _jitter(rng, (225, 215, 195) if rng.random() < 0.5 else fur, 40)
        draw.polygon(pose(_ellipse(0, 0.45 * stretch, rng.uniform(0.35, 0.5), rng.uniform(0.3, 0.42))), fill=muzzle)
        draw.polygon(pose(_ellipse(0, 0.28 * stretch, rng.uniform(0.12, 0.18), 0.09)), fill=dark)
        if rng.random() < 0.4:
            draw.polygon(pose(_ellipse(0, 0.75 * stretch, 0.1, 0.14)), fill=_jitter(rng, (215, 90, 100)))


def draw_picture(seed, kind, index, min_side, max_side):
    """One JPEG, a pure function of its arguments."""
    rng = np.random.default_rng([seed, CLASSES.index(kind), index])
    width = int(rng.integers(min_side, max_side + 1))
    height = int(rng.integers(min_side, max_side + 1))
    canvas = _background(rng, width, height)
    draw = ImageDraw.Draw(canvas)

    radius = min(width, height) * rng.uniform(0.15, 0.32)
    cx = rng.uniform(radius, width - radius)
    cy = rng.uniform(radius * 1.2, height - radius)
    if rng.random() < 0.6:  # a body behind the head
        draw.polygon(_Pose(cx, cy, radius, 0)(_ellipse(rng.uniform(-0.5, 0.5), 1.6, 1.1, 0.9)),
                     fill=_jitter(rng, FUR[rng.integers(len(FUR))]))
    _draw_head(draw, rng, kind, _Pose(cx, cy, radius, rng.uniform(-0.5, 0.5)))

    for _ in range(rng.integers(0, 3)):  # small occluders in front
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        size = rng.uniform(0.1, 0.5) * radius
        draw.ellipse([x0, y0, x0 + size, y0 + size], fill=_random_colour(rng))
    if rng.random() < 0.3:
        canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))

    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=int(rng.integers(70, 96)))
    return buffer.getvalue()


def _draw_job(job):
    return draw_picture(*job)


def _write_zip(path, members, workers):
    """Draw `members` [(name, job)] in parallel into a stored zip at `path`, atomically."""
    workers = workers or os.cpu_count() or 1
    with atomic_file(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        # spawn, not fork: a fork of a process whose TensorFlow threads hold locks (a test
        # run, a notebook) can deadlock in the child.
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            pictures = pool.imap(_draw_job, [job for _, job in members], chunksize=16)
            for (name, _), data in tqdm(zip(members, pictures), total=len(members), desc=str(path), unit="img"):
                info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
                info.external_attr = 0o644 << 16
                archive.writestr(info, data)


def write_sample(path, per_class, seed, min_side=200, max_side=500, workers=None):
    """`per_class` pictures of each class in Kaggle's train.zip layout (train/cat.<i>.jpg)."""
    _write_zip(
        path,
        [(f"train/{kind}.{i}.jpg", (seed, kind, i, min_side, max_side)) for kind in CLASSES for i in range(per_class)],
        workers,
    )


def test_kinds(count, seed):
    """The class of each synthetic test picture, id 1..count (the labels Kaggle keeps secret)."""
    rng = np.random.default_rng([seed, 99])
    return [CLASSES[k] for k in rng.integers(0, 2, count)]


def write_test_sample(path, count, seed, min_side=200, max_side=500, workers=None):
    """`count` unlabelled pictures in Kaggle's test1.zip layout (test1/<id>.jpg, ids from 1)."""
    _write_zip(path, [(f"test1/{image_id}.jpg", (seed, kind, TEST_INDEX_OFFSET + image_id, min_side, max_side))
               for image_id, kind in enumerate(test_kinds(count, seed), start=1)], workers)
