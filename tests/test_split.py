import io
import json
import struct
import zipfile
import zlib

import pytest
from PIL import Image

from dogs_vs_cats.errors import StageError
from dogs_vs_cats.split import make_split
from tests.helpers import jpeg_bytes, kaggle_members, write_zip

COUNTS = {"train": 4, "validation": 2, "test": 2}


def split(tmp_path, archive, counts=COUNTS, order="book", seed=0):
    out, report = tmp_path / "out" / "split", tmp_path / "out" / "data.json"
    summary = make_split(archive, counts, order, seed, output=out, report=report)
    return out, summary


def names(out, split_name, folder):
    return sorted((out / split_name / folder).iterdir(), key=lambda p: int(p.name.split(".")[1]))


def indices(out, split_name, folder):
    return [int(p.name.split(".")[1]) for p in names(out, split_name, folder)]


def test_book_rule_exact_counts_and_index_ranges(tmp_path):
    archive = write_zip(tmp_path / "train.zip", kaggle_members(12))
    out, summary = split(tmp_path, archive)
    for folder, kind in (("cats", "cat"), ("dogs", "dog")):
        assert indices(out, "train", folder) == [0, 1, 2, 3]
        assert indices(out, "validation", folder) == [4, 5]
        assert indices(out, "test", folder) == [6, 7]
        assert all(p.name.startswith(f"{kind}.") for p in names(out, "train", folder))
    report = json.loads((tmp_path / "out" / "data.json").read_text())
    assert report["counts"] == {"train": {"cats": 4, "dogs": 4}, "validation": {"cats": 2, "dogs": 2},
                                "test": {"cats": 2, "dogs": 2}}
    assert report["numbers"]["train"]["cats"] == {"first": 0, "last": 3}  # each split's first and last number
    assert report["numbers"]["validation"]["dogs"] == {"first": 4, "last": 5}
    assert report["numbers"]["test"]["dogs"] == {"first": 6, "last": 7}
    assert report["skipped"] == [] and report["total"] == 16
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["data.json", "split"]  # no temp leftovers


def test_book_rule_follows_numbers_not_text_order(tmp_path):
    archive = write_zip(tmp_path / "train.zip", kaggle_members(12))
    out, _ = split(tmp_path, archive, {"train": 10, "validation": 1, "test": 1})
    assert indices(out, "train", "cats") == list(range(10))
    assert indices(out, "validation", "cats") == [10]


def test_random_order_is_seeded(tmp_path):
    archive = write_zip(tmp_path / "train.zip", kaggle_members(30))
    first, _ = split(tmp_path / "a", archive, order="random", seed=1)
    second, _ = split(tmp_path / "b", archive, order="random", seed=1)
    other, _ = split(tmp_path / "c", archive, order="random", seed=2)
    picks = lambda out: {s: indices(out, s, "cats") for s in COUNTS}  # noqa: E731
    assert picks(first) == picks(second)
    assert picks(first) != picks(other)
    chosen = sum(picks(first).values(), [])
    assert len(set(chosen)) == 8 and chosen != list(range(8))


def truncated_jpeg():
    data = jpeg_bytes(size=(64, 64))
    return data[: len(data) // 2]


def png_bomb_header(width=40000, height=40000):
    """A PNG that claims 1.6 billion pixels: Pillow's decompression-bomb guard must refuse it."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100))
            + chunk(b"IEND", b""))


def test_bad_members_are_skipped_reported_and_replaced(tmp_path):
    members = kaggle_members(12)
    members["train/cat.1.jpg"] = b"not an image at all"
    members["train/cat.2.jpg"] = b""
    members["train/cat.5.jpg"] = truncated_jpeg()
    members["train/dog.0.jpg"] = png_bomb_header()
    archive = write_zip(tmp_path / "train.zip", members)
    out, summary = split(tmp_path, archive)
    assert indices(out, "train", "cats") == [0, 3, 4, 6]
    assert indices(out, "validation", "cats") == [7, 8]
    assert indices(out, "test", "cats") == [9, 10]
    assert indices(out, "train", "dogs") == [1, 2, 3, 4]
    reasons = {item["member"]: item["reason"] for item in summary["skipped"]}
    assert reasons["train/cat.1.jpg"] == "not an image"
    assert reasons["train/cat.2.jpg"] == "empty file"
    assert reasons["train/cat.5.jpg"].startswith("corrupt image")
    assert reasons["train/dog.0.jpg"].startswith("too large")
    assert summary["skipped_count"] == 4
    assert len(list((out / "train" / "cats").iterdir())) == 4


def cmyk_jpeg():
    buffer = io.BytesIO()
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_grayscale_cmyk_png_and_alpha_become_rgb_jpeg(tmp_path):
    members = kaggle_members(8)
    members["train/cat.0.jpg"] = jpeg_bytes(120, mode="L")
    members["train/cat.1.jpg"] = cmyk_jpeg()
    members["train/cat.2.jpg"] = jpeg_bytes((10, 200, 10), fmt="PNG")
    members["train/cat.3.jpg"] = jpeg_bytes((10, 20, 30, 0), mode="RGBA", fmt="PNG")
    archive = write_zip(tmp_path / "train.zip", members)
    out, summary = split(tmp_path, archive)
    assert indices(out, "train", "cats") == [0, 1, 2, 3]
    for path in (out / "train" / "cats").iterdir():
        image = Image.open(path)
        assert (image.format, image.mode) == ("JPEG", "RGB")
    converted = {item["member"]: item["reason"] for item in summary["converted"]}
    assert set(converted) == {f"train/cat.{i}.jpg" for i in range(4)}
    assert "PNG" in converted["train/cat.2.jpg"] and "CMYK" in converted["train/cat.1.jpg"]
    red, green, blue = Image.open(out / "train" / "cats" / "cat.3.jpg").getpixel((5, 5))
    assert min(red, green, blue) > 240  # transparent pixels become white, not black
    assert Image.open(out / "train" / "cats" / "cat.2.jpg").getpixel((5, 5))[1] > 150


def test_zip_slip_and_links_never_leave_the_output(tmp_path):
    members = kaggle_members(10)
    link = (b"/etc/passwd", (0o120777 << 16))
    evil = {
        "../../escaped/cat.100.jpg": jpeg_bytes(),
        "/tmp/absolute/cat.101.jpg": jpeg_bytes(),
        "train/..\\..\\cat.102.jpg": jpeg_bytes(),
        "train/cat.103.jpg": link,
    }
    archive = write_zip(tmp_path / "train.zip", {**members, **evil})
    work = tmp_path / "deep" / "er"
    work.mkdir(parents=True)
    out, summary = split(work, archive, {"train": 8, "validation": 1, "test": 1})
    written = sorted(p.relative_to(work) for p in work.rglob("*") if p.is_file())
    assert all(str(p).startswith("out") for p in written)
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "deep" / "escaped").exists()
    skipped = {item["member"]: item["reason"] for item in summary["skipped"]}
    accounted = set(skipped) | set(summary["ignored"]["examples"])
    assert set(evil) <= accounted
    assert skipped["train/cat.103.jpg"] == "symbolic link"
    assert all(int(p.name.split(".")[1]) < 10 for p in out.rglob("*.jpg"))


def test_unmatched_names_are_ignored_and_counted(tmp_path):
    members = kaggle_members(8)
    extras = {"train/cat.x.jpg": b"", "train/cat.01.jpg": jpeg_bytes(), "README.txt": b"hi",
              "train/Cat.3.jpg": jpeg_bytes(), "train/cat.4.png": jpeg_bytes()}
    archive = write_zip(tmp_path / "train.zip", {**members, **extras})
    out, summary = split(tmp_path, archive)
    assert summary["ignored"]["count"] == len(extras)
    assert set(summary["ignored"]["examples"]) == set(extras)
    assert summary["skipped"] == []


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_competition_archive_holding_train_zip(tmp_path, compression):
    bare = write_zip(tmp_path / "train.zip", kaggle_members(10))
    competition = tmp_path / "dogs-vs-cats.zip"
    with zipfile.ZipFile(competition, "w", compression) as archive:
        archive.writestr("sampleSubmission.csv", "id,label\n")
        archive.write(bare, "train.zip")
        archive.writestr("test1.zip", b"PK\x05\x06" + b"\0" * 18)
    from_bare, _ = split(tmp_path / "bare", bare)
    from_competition, _ = split(tmp_path / "competition", competition)
    for split_name in COUNTS:
        for folder in ("cats", "dogs"):
            assert [p.read_bytes() for p in names(from_bare, split_name, folder)] == \
                   [p.read_bytes() for p in names(from_competition, split_name, folder)]


def test_too_few_valid_images_is_a_clear_error_and_keeps_the_old_split(tmp_path):
    good = write_zip(tmp_path / "good.zip", kaggle_members(10))
    out, _ = split(tmp_path, good)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    members = kaggle_members(9)
    members["train/dog.3.jpg"] = b"garbage"
    small = write_zip(tmp_path / "small.zip", members)
    with pytest.raises(StageError) as error:
        split(tmp_path, small, {"train": 4, "validation": 2, "test": 3})
    message = str(error.value)
    assert "small.zip" in message and "8 usable dog images" in message and "asks for 9" in message
    assert "train/dog.3.jpg" in message
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["data.json", "split"]


def test_missing_or_broken_archive_says_what_to_do(tmp_path):
    with pytest.raises(StageError, match=r"nope\.zip not found.*kaggle competitions download.*dvc add"):
        split(tmp_path, tmp_path / "nope.zip")
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"this is not a zip")
    with pytest.raises(StageError, match=r"broken\.zip is not a readable zip"):
        split(tmp_path, broken)


def test_huge_image_under_the_guard_is_kept(tmp_path):
    members = kaggle_members(8)
    members["train/cat.0.jpg"] = jpeg_bytes(size=(3000, 2000))
    archive = write_zip(tmp_path / "train.zip", members, zipfile.ZIP_DEFLATED)
    out, summary = split(tmp_path, archive)
    assert Image.open(out / "train" / "cats" / "cat.0.jpg").size == (3000, 2000)
    assert summary["skipped"] == []


def test_image_between_the_warning_and_the_error_limit_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow only warns from 1000 to 2000 pixels
    members = {f"train/{kind}.{i}.jpg": jpeg_bytes(size=(10, 10)) for kind in ("cat", "dog") for i in range(4)}
    members["train/cat.0.jpg"] = jpeg_bytes(size=(40, 30))  # 1200 pixels
    archive = write_zip(tmp_path / "train.zip", members)
    out, summary = split(tmp_path, archive, {"train": 3, "validation": 0, "test": 0})
    assert indices(out, "train", "cats") == [1, 2, 3]
    assert summary["skipped"] == [{"member": "train/cat.0.jpg",
                                   "reason": "too large: 40x30 pixels exceeds Pillow's limit of 1000"}]
