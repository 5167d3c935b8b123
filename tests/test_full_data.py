"""The whole competition (`make full`, docs/full-data.md): `split.train: all` on archives
with gaps in the numbering and bad photos, and the stages that stream what no longer fits
in memory giving what the in-memory ones give."""

import json

import keras
import numpy as np
import pytest

from dogs_vs_cats.errors import StageError
from dogs_vs_cats.features import load_features
from dogs_vs_cats.nets import dense_head
from dogs_vs_cats.split import make_split
from dogs_vs_cats.training import ArrayBatches, Phase, train
from tests.helpers import jpeg_bytes, section, write_zip

ALL = {"train": "all", "validation": 5, "test": 4, "holdout_from": 10}


def gappy_archive(path, bad=()):
    """cat and dog 0-29 and 60-89 (a gap, as the shared archive's 2000-3999), `bad` broken."""
    members = {}
    for kind, colour in (("cat", (90, 60, 40)), ("dog", (220, 220, 210))):
        for i in [*range(30), *range(60, 90)]:
            members[f"train/{kind}.{i}.jpg"] = b"not a jpeg" if (kind, i) in bad else jpeg_bytes(colour, (30, 40))
    return write_zip(path, members)


def numbers(folder):
    return sorted(int(p.name.split(".")[1]) for p in folder.iterdir())


def test_train_all_takes_every_photo_outside_validation_and_test(tmp_path):
    archive = gappy_archive(tmp_path / "train.zip", bad={("cat", 3), ("dog", 12)})
    out = tmp_path / "split"
    summary = make_split(archive, ALL, output=out, report=tmp_path / "data.json")
    # cats: 3 is bad, so the usable photos in order are 0-2, 4-29, 60-89; positions 10-14
    # (numbers 11-15) validate, 15-18 (16-19) test, every other usable photo trains
    assert numbers(out / "validation/cats") == [11, 12, 13, 14, 15]
    assert numbers(out / "test/cats") == [16, 17, 18, 19]
    assert numbers(out / "train/cats") == [0, 1, 2, *range(4, 11), *range(20, 30), *range(60, 90)]
    # dogs: 12 is bad, so validation is 10, 11, 13, 14, 15
    assert numbers(out / "validation/dogs") == [10, 11, 13, 14, 15]
    assert numbers(out / "test/dogs") == [16, 17, 18, 19]
    assert numbers(out / "train/dogs") == [*range(10), *range(20, 30), *range(60, 90)]
    for kind in ("cats", "dogs"):  # nothing lost, nothing twice
        chosen = [n for split in ("train", "validation", "test") for n in numbers(out / split / kind)]
        assert len(chosen) == len(set(chosen)) == 59
    report = json.loads((tmp_path / "data.json").read_text())
    assert report["counts"]["train"] == {"cats": 50, "dogs": 50} and report["total"] == 118
    assert sorted(item["member"] for item in report["skipped"]) == ["train/cat.3.jpg", "train/dog.12.jpg"]
    assert summary["skipped_count"] == 2


def test_train_all_with_the_book_holdout_reads_the_books_validation_and_test(tmp_path):
    archive = gappy_archive(tmp_path / "train.zip")
    book = make_split(archive, {"train": 10, "validation": 5, "test": 4}, output=tmp_path / "book",
                      report=tmp_path / "book.json")
    full = make_split(archive, ALL, output=tmp_path / "full", report=tmp_path / "full.json")
    for split in ("validation", "test"):
        for kind in ("cats", "dogs"):
            assert numbers(tmp_path / "full" / split / kind) == numbers(tmp_path / "book" / split / kind)
    assert book["counts"]["train"]["cats"] == 10 and full["counts"]["train"]["cats"] == 51


def test_train_all_needs_room_for_the_holdout_and_one_photo(tmp_path):
    archive = gappy_archive(tmp_path / "train.zip")
    with pytest.raises(StageError, match=r"has 60 usable cat images; split.holdout_from \+ split.validation \+ "
                                         r"split.test \(\+ 1 to train on\) asks for 61"):
        make_split(archive, {**ALL, "holdout_from": 51}, output=tmp_path / "split", report=tmp_path / "data.json")
    assert not (tmp_path / "split").exists()


def test_the_schema_takes_all_and_nothing_like_it():
    assert section("split", train="all").train == "all"
    with pytest.raises(StageError, match="split.train"):
        section("split", train="everything")
    with pytest.raises(StageError, match="split.holdout_from"):
        section("split", holdout_from=-1)


def test_memory_mapped_features_train_like_features_in_memory(tmp_path, rng):
    """train_head reads the features through a memory map (19,000 photos' are 600 MB): the
    same weights as from arrays in memory."""
    folder = tmp_path / "features"
    folder.mkdir()
    for split, count in (("train", 40), ("validation", 12)):
        x = rng.normal(size=(count, 2, 2, 8)).astype("float32")
        np.save(folder / f"{split}_features.npy", x)
        np.save(folder / f"{split}_labels.npy", (x[:, 0, 0, 0] > 0).astype("float32"))
    weights = []
    for mapped in (True, False):
        (x, y), validation = load_features(folder, "train"), load_features(folder, "validation")
        assert isinstance(x, np.memmap)
        if not mapped:
            x, validation = np.array(x), (np.array(validation[0]), validation[1])
        keras.utils.set_random_seed(5)
        model = dense_head((2, 2, 8), 8, 0.0)
        train("train_head", model, {"x": ArrayBatches(x, y, 8, 5), "validation_data": validation,
                                    "validation_batch_size": 8},
              [Phase(2, 1e-2)], {"seed": 5}, output=tmp_path / f"{mapped}.keras", logs=tmp_path / f"logs{mapped}")
        weights.append(model.get_weights())
    for mapped, in_memory in zip(*weights):
        np.testing.assert_array_equal(mapped, in_memory)
