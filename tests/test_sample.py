import hashlib
import io
import re
import zipfile

import numpy as np
from PIL import Image

from dogs_vs_cats.sample import write_sample


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sample_has_kaggle_layout_and_counts(tmp_path):
    path = write_sample_to(tmp_path / "train.zip", per_class=6, seed=1)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        assert sorted(names) == sorted([f"train/{kind}.{i}.jpg" for kind in ("cat", "dog") for i in range(6)])
        for name in names:
            image = Image.open(io.BytesIO(archive.read(name)))
            assert image.format == "JPEG" and image.mode == "RGB"
            assert all(40 <= side <= 90 for side in image.size)


def write_sample_to(path, per_class, seed):
    write_sample(path, per_class, seed, min_side=40, max_side=90, workers=2)
    return path


def test_sample_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    first = write_sample_to(tmp_path / "a.zip", 4, seed=7)
    second = write_sample_to(tmp_path / "b.zip", 4, seed=7)
    third = write_sample_to(tmp_path / "c.zip", 4, seed=8)
    assert digest(first) == digest(second)
    assert digest(first) != digest(third)


def test_sample_sizes_vary_like_photos(tmp_path):
    path = tmp_path / "train.zip"
    write_sample(path, 30, seed=3, min_side=200, max_side=500, workers=2)
    with zipfile.ZipFile(path) as archive:
        sizes = [Image.open(io.BytesIO(archive.read(n))).size for n in archive.namelist()]
    widths, heights = zip(*sizes)
    assert min(widths + heights) >= 200 and max(widths + heights) <= 500
    assert len(set(sizes)) > 50  # not one size for all
    assert np.std(widths) > 40


def test_classes_differ_but_not_in_mean_colour(tmp_path):
    """Cats and dogs share fur colours and backgrounds: the mean colour says little."""
    path = write_sample_to(tmp_path / "train.zip", per_class=40, seed=5)
    means = {"cat": [], "dog": []}
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            kind = re.match(r"train/(cat|dog)", name).group(1)
            means[kind].append(np.asarray(Image.open(io.BytesIO(archive.read(name)))).mean())
    gap = abs(np.mean(means["cat"]) - np.mean(means["dog"]))
    spread = np.std(means["cat"] + means["dog"])
    assert gap < spread
