"""Hostile inputs and interruptions: nothing lost, nothing half-written, one line instead of a traceback."""

import io
import os
import shlex
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from dogs_vs_cats import outputs, stage
from dogs_vs_cats.archives import BadImage, check_image, read_member
from dogs_vs_cats.errors import StageError
from dogs_vs_cats.images import list_images
from dogs_vs_cats.split import make_split
from tests.helpers import jpeg_bytes, kaggle_members, write_zip
from tests.workspace import copy_project, environment, REPO, stage_command, update_params

COUNTS = {"train": 4, "validation": 2, "test": 2}


def project(tmp_path, **overrides):
    """A folder where stages run, on the book's params with `overrides`."""
    return copy_project(tmp_path, overrides)


def start(cwd, module):
    return subprocess.Popen([sys.executable, *stage_command(module, cwd / "params.yaml")[1:]], cwd=cwd,
                            env=environment(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, process, seconds=120):
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def debris(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if outputs.DEBRIS.match(p.name))


# --- interruptions -------------------------------------------------------------------------

def test_sigterm_during_split_removes_its_temporaries_and_keeps_the_old_split(tmp_path):
    archive = write_zip(tmp_path / "train.zip", kaggle_members(400))
    ws = project(tmp_path, data={"archive": "train.zip"}, split={"train": 300, "validation": 50, "test": 50})
    (ws / "data/split/train/cats").mkdir(parents=True)
    (ws / "data/split/train/cats/cat.0.jpg").write_bytes(b"the previous split")
    process = start(ws, "split")
    wait_for(lambda: any((ws / "data").glob(f"{outputs.PREFIX}tmp-*-split")), process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143 and "terminated" in stderr and "Traceback" not in stderr
    assert debris(ws) == [] and archive.is_file()
    assert (ws / "data/split/train/cats/cat.0.jpg").read_bytes() == b"the previous split"
    assert not (ws / "metrics/data.json").exists()


def test_sigkill_in_training_leaves_no_log_and_the_next_run_sweeps_the_debris(tmp_path):
    ws = project(tmp_path, train_head={"epochs": 100000, "batch_size": 4})
    rng = np.random.default_rng(0)
    (ws / "data/features").mkdir(parents=True)
    for split in ("train", "validation"):
        np.save(ws / f"data/features/{split}_features.npy", rng.normal(0, 1, (8, 1, 1, 16)).astype("float32"))
        np.save(ws / f"data/features/{split}_labels.npy", np.array([0, 1] * 4, dtype="float32"))
    live_debris = ws / f"models/{outputs.PREFIX}tmp-{os.getpid()}-0123abcd-head.keras"  # a live process's: stays
    live_debris.parent.mkdir()
    live_debris.write_text("in use")
    process = start(ws, "train_head")
    wait_for(lambda: any((ws / "dvclive").glob(f"{outputs.PREFIX}tmp-*-train_head/plots/metrics/train/loss.tsv")),
             process)
    process.kill()
    process.wait()
    assert not (ws / "dvclive/train_head").exists() and not (ws / "models/head.keras").exists()
    assert [name for name in debris(ws) if "train_head" in name]  # SIGKILL cannot clean up...
    update_params(ws / "params.yaml", {"train_head": {"epochs": 1}})
    result = subprocess.run([sys.executable, *stage_command("train_head", ws / "params.yaml")[1:]], cwd=ws,
                            env=environment(),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert debris(ws) == [str(live_debris.relative_to(ws))]  # ...the next run sweeps it
    assert (ws / "dvclive/train_head/metrics.json").stat().st_size > 0 and (ws / "models/head.keras").is_file()


def test_debris_names_are_ignored_by_git():
    for name in ("data/.~dogs-vs-cats-tmp-123-0123abcd-split/cats/cat.0.jpg",
                 "models/.~dogs-vs-cats-tmp-9-89abcdef-head.keras",
                 "dvclive/.~dogs-vs-cats-old-77-00000000-finetune/x"):
        assert outputs.DEBRIS.fullmatch(name.split("/")[1]), name
        assert subprocess.run(["git", "check-ignore", "-q", "--no-index", name], cwd=REPO).returncode == 0, name
    # The comment above the pattern names the module that makes these names.
    comment = next(line for line in (REPO / ".gitignore").read_text().splitlines() if "killed" in line)
    assert "dogs_vs_cats/outputs.py" in comment


def test_unwritable_output_folder_fails_before_any_work(tmp_path, monkeypatch):
    (tmp_path / "metrics").mkdir()
    if os.geteuid() == 0:  # root writes anywhere: deny it the way a read-only folder would
        real = os.access
        monkeypatch.setattr(os, "access",
                            lambda path, mode: False if str(path) == str(tmp_path / "metrics") else real(path, mode))
    else:
        (tmp_path / "metrics").chmod(0o555)
    try:
        with pytest.raises(StageError,
                           match=r"metrics is not writable, so .*metrics/data.json cannot be written.*chmod u\+w"):
            outputs.check_writable([tmp_path / "data/split", tmp_path / "metrics/data.json"])
    finally:
        (tmp_path / "metrics").chmod(0o755)
    outputs.check_writable([tmp_path / "data/split", tmp_path / "models/new/head.keras"])  # missing folders are fine


def test_out_of_memory_is_one_line_not_a_traceback(monkeypatch, capsys):
    import tensorflow as tf
    monkeypatch.setattr(sys, "argv", ["stages/features.py"])

    def main():
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[32,512,512,64]")
    with pytest.raises(SystemExit) as exit_info:
        stage.run(main)
    error = capsys.readouterr().err.strip()
    assert exit_info.value.code == 1 and error.count("\n") == 0
    assert error.startswith("error: out of memory (OOM when allocating") and "lower image.size" in error
    assert "dvc repro --force split" not in error


# --- archives ------------------------------------------------------------------------------

def test_member_inflating_past_the_limit_is_refused_before_it_is_read(tmp_path):
    archive = write_zip(tmp_path / "bomb.zip", {"train/cat.0.jpg": b"\0" * 3_000_000, "train/cat.1.jpg": jpeg_bytes()},
                        zipfile.ZIP_DEFLATED)
    with zipfile.ZipFile(archive) as opened:
        bomb, good = opened.infolist()
        assert bomb.compress_size < 10_000
        with pytest.raises(BadImage, match="too large: inflates to more than 1,000,000 bytes"):
            read_member(opened, bomb, limit=1_000_000)
        assert read_member(opened, good, limit=1_000_000) == jpeg_bytes()


def patch_member(path, name, flag_bits=None, method=None):
    """Rewrite a member's general-purpose flags or compression method in both zip headers."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    entry = data.find(b"PK\x01\x02")  # the central directory, one entry per member
    while data[entry + 46:entry + 46 + int.from_bytes(data[entry + 28:entry + 30], "little")].decode() != name:
        entry = data.find(b"PK\x01\x02", entry + 4)
    central = entry
    for offset, flag_at, method_at in ((info.header_offset, 6, 8), (central, 8, 10)):
        if flag_bits is not None:
            data[offset + flag_at:offset + flag_at + 2] = flag_bits.to_bytes(2, "little")
        if method is not None:
            data[offset + method_at:offset + method_at + 2] = method.to_bytes(2, "little")
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("patch,expected", [({"flag_bits": 1}, "is encrypted"),
                                            ({"method": 9}, "uses a compression Python cannot read")])
def test_encrypted_or_deflate64_inner_train_zip_is_one_line(tmp_path, patch, expected):
    inner = write_zip(tmp_path / "train.zip", kaggle_members(4))
    outer = tmp_path / "dogs-vs-cats.zip"
    with zipfile.ZipFile(outer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(inner, "train.zip")
        archive.writestr("sampleSubmission.csv", "id,label\n")
    patch_member(outer, "train.zip", **patch)
    with pytest.raises(StageError) as error:
        make_split(outer, COUNTS, output=tmp_path / "split", report=tmp_path / "data.json")
    message = str(error.value)
    assert expected in message and "re-zip" in message and "point data.archive at the inner zip" in message
    assert "\n" not in message


def test_encrypted_members_are_skipped_with_their_reason(tmp_path):
    archive = write_zip(tmp_path / "train.zip", kaggle_members(3))
    patch_member(archive, "train/dog.1.jpg", flag_bits=1)
    with pytest.raises(StageError) as error:
        make_split(archive, {"train": 1, "validation": 1, "test": 1}, output=tmp_path / "split",
                   report=tmp_path / "d.json")
    assert "1 encrypted member (e.g. train/dog.1.jpg)" in str(error.value)


def test_too_few_images_says_why_members_were_not_used(tmp_path):
    members = {f"train/{kind.upper()}.{i}.JPG": jpeg_bytes() for kind in ("cat", "dog") for i in range(20)}
    members |= {"train/cat.0.jpg": jpeg_bytes(), "train/dog.0.jpg": jpeg_bytes(),
                "train/cat.1.jpg": (jpeg_bytes(), 0o120777 << 16), "../train/dog.1.jpg": jpeg_bytes()}
    archive = write_zip(tmp_path / "train.zip", members)
    with pytest.raises(StageError) as error:
        make_split(archive, COUNTS, output=tmp_path / "split", report=tmp_path / "data.json")
    message = str(error.value)
    assert "has 1 usable cat images" in message
    assert "1 symbolic link (e.g. train/cat.1.jpg)" in message and "1 unsafe path" in message
    assert "40 members ignored: names not like train/cat.<n>.jpg or train/dog.<n>.jpg (e.g. train/CAT.0.JPG" in message
    assert not (tmp_path / "data.json").exists()


def test_a_hand_added_file_in_the_split_is_named(tmp_path):
    folder = tmp_path / "split/train/cats"
    folder.mkdir(parents=True)
    (tmp_path / "split/train/dogs").mkdir()
    for name in ("cat.0.jpg", "cat.1 copy.jpg"):
        (folder / name).write_bytes(jpeg_bytes())
    with pytest.raises(StageError, match=r"cats/cat.1 copy.jpg is not a file `split` writes .*dvc checkout"):
        list_images("train", tmp_path / "split")


# --- images --------------------------------------------------------------------------------

def encoded(array, fmt, mode=None):
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format=fmt)
    return buffer.getvalue()


def decoded(data):
    jpeg, note = check_image(data)
    return np.asarray(Image.open(io.BytesIO(jpeg)))[..., 0].astype(int), note


@pytest.mark.parametrize("name,data,top", [
    ("16-bit PNG", encoded(np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (16, 1)), "PNG"), 65535),
    ("32-bit TIFF", encoded(np.tile(np.linspace(0, 2**31 - 1, 256).astype(np.int32), (16, 1)), "TIFF"), 2**31 - 1),
    ("float TIFF", encoded(np.tile(np.linspace(0, 1, 256).astype(np.float32), (16, 1)), "TIFF"), 1.0),
])
def test_wide_grey_images_are_scaled_not_clipped(name, data, top):
    pixels, note = decoded(data)
    assert "scaled to 8 bits" in note
    row = pixels[8]
    # a gradient, not white or black
    assert row[:8].max() < 10 and row[-8:].min() > 245 and abs(row[128] - 128) < 8, name


def test_wide_grey_constants_keep_their_level():
    pixels, _ = decoded(encoded(np.full((16, 16), 30000, np.uint16), "PNG"))
    assert abs(pixels.mean() - 30000 / 257) < 3  # mid grey, not white
    with pytest.raises(BadImage, match="float image with values up to 1000"):
        check_image(encoded(np.full((8, 8), 1000, np.float32), "TIFF"))


@pytest.mark.slow  # reads the Makefile's command through `make -n`
def test_make_quotes_paths_for_the_shell_and_for_hydra():
    shown = subprocess.run(["make", "-n", "run", "book", "WEIGHTS=my weights/vgg 16.h5", "DATA=it's, a=b.zip",
                            "FAST=1"], cwd=REPO, capture_output=True, text=True).stdout
    # under a parent make (`make test`), make -n also prints "make[1]: Entering directory"
    arguments = shlex.split(next(line for line in shown.splitlines() if line.startswith("dvc exp run ")))
    overrides = [arguments[i + 1] for i, argument in enumerate(arguments) if argument == "-S"]
    assert "base.weights='my weights/vgg 16.h5'" in overrides  # quoted: Hydra takes it as it is
    assert "data.archive='it\\'s, a=b.zip'" in overrides
