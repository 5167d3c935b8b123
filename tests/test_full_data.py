"""The whole competition (`make full`, docs/full-data.md): `split.train: all` on archives
with gaps in the numbering and bad photos, and the stages that stream what no longer fits
in memory giving what the in-memory ones give."""

import json

import keras
import numpy as np
import pytest

from dogs_vs_cats.batches import ArrayBatches
from dogs_vs_cats.errors import StageError
from dogs_vs_cats.features import load_features
from dogs_vs_cats.nets import dense_head
from dogs_vs_cats.split import make_split
from dogs_vs_cats.training import Phase, train
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


def test_train_all_takes_every_photo_outside_validation_and_test(tmp_path, capsys):
    archive = gappy_archive(tmp_path / "train.zip", bad={("cat", 3), ("dog", 12)})
    out = tmp_path / "split"
    summary = make_split(archive, ALL, output=out, report=tmp_path / "data.json")
    # cats: 3 is bad, below holdout_from, so validation is still 10-14 and test 15-18;
    # every other usable photo trains
    assert numbers(out / "validation/cats") == [10, 11, 12, 13, 14]
    assert numbers(out / "test/cats") == [15, 16, 17, 18]
    assert numbers(out / "train/cats") == [0, 1, 2, *range(4, 10), *range(19, 30), *range(60, 90)]
    # dogs: 12 is bad, inside the held-out 10-18, so validation is 10, 11, 13, 14, 15, and one line says so
    assert numbers(out / "validation/dogs") == [10, 11, 13, 14, 15]
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: dog.10-18 (split.holdout_from on) lack 1 usable photo: validation took dog.10-15 "
                        "and test dog.16-19 instead (metrics/data.json: numbers)"]
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
    with pytest.raises(StageError, match=r"has 60 usable cat images, 5 of them numbered 85 or above; split.validation "
                                         r"\+ split.test asks for 9 numbered split.holdout_from \(85\) or above, "
                                         r"and 1 more to train on"):
        make_split(archive, {**ALL, "holdout_from": 85}, output=tmp_path / "split", report=tmp_path / "data.json")
    assert not (tmp_path / "split").exists()
    nine = write_zip(tmp_path / "nine.zip", {f"train/{kind}.{i}.jpg": jpeg_bytes() for kind in ("cat", "dog")
                                             for i in range(9)})
    with pytest.raises(StageError, match="has 9 usable cat images, 9 of them numbered 0 or above"):
        make_split(nine, {**ALL, "holdout_from": 0}, output=tmp_path / "split", report=tmp_path / "data.json")


def test_train_all_holds_out_by_number_whatever_is_missing_below(tmp_path, capsys):
    """cat.5 and cat.25 missing, dogs starting at dog.10: the held-out photos are still the
    ones numbered from holdout_from on, as docs/full-data.md says (not the 20th usable)."""
    members = {f"train/cat.{i}.jpg": jpeg_bytes() for i in range(60) if i not in (5, 25)}
    members.update({f"train/dog.{i}.jpg": jpeg_bytes() for i in range(10, 60)})
    archive = write_zip(tmp_path / "train.zip", members)
    counts = {"train": "all", "validation": 10, "test": 10, "holdout_from": 30}
    make_split(archive, counts, output=tmp_path / "split", report=tmp_path / "data.json")
    for kind in ("cats", "dogs"):
        assert numbers(tmp_path / "split/validation" / kind) == list(range(30, 40))
        assert numbers(tmp_path / "split/test" / kind) == list(range(40, 50))
    assert "warning" not in capsys.readouterr().out
    report = json.loads((tmp_path / "data.json").read_text())
    assert report["numbers"] == {"train": {"cats": {"first": 0, "last": 59}, "dogs": {"first": 10, "last": 59}},
                                 "validation": {"cats": {"first": 30, "last": 39}, "dogs": {"first": 30, "last": 39}},
                                 "test": {"cats": {"first": 40, "last": 49}, "dogs": {"first": 40, "last": 49}}}
    # a photo missing inside the held-out range: the next one takes its place, and one line says so
    del members["train/cat.33.jpg"]
    make_split(write_zip(tmp_path / "gap.zip", members), counts, output=tmp_path / "gap", report=tmp_path / "gap.json")
    assert numbers(tmp_path / "gap/validation/cats") == [30, 31, 32, *range(34, 41)]
    assert capsys.readouterr().out.splitlines()[0] == (
        "warning: cat.30-49 (split.holdout_from on) lack 1 usable photo: validation took cat.30-40 and test "
        "cat.41-50 instead (metrics/data.json: numbers)")


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
