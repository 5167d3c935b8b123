"""`python -m stages.predict` and the `submission` stage, on a tiny model whose answer is the colour."""

import csv
import os
import random
import signal
import subprocess
import sys
import zipfile
from unittest import mock

import keras
import numpy as np
import pytest
from PIL import Image

from dogs_vs_cats import cli
from dogs_vs_cats.cli import main
from dogs_vs_cats.errors import StageError
from dogs_vs_cats.outputs import PREFIX
from dogs_vs_cats.predict import classify, predict_batch, TTA_VIEWS, tta_views
from dogs_vs_cats.submission import write_submission
from tests.helpers import jpeg_bytes, write_zip
from tests.workspace import REPO

RED, BLUE = (220, 30, 30), (30, 30, 220)


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory):
    """P(dog) rises with red and falls with blue: red pictures are dogs."""
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(1, activation="sigmoid")])
    model.layers[-1].set_weights([np.array([[6.0], [0.0], [-6.0]]), np.zeros(1)])
    path = tmp_path_factory.mktemp("model") / "colour.keras"
    model.save(path)
    return path


def write_image(path, colour, fmt="JPEG", mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (50, 40), colour).save(path, format=fmt)
    return path


def test_folder_prints_every_good_image_and_one_line_per_bad_one(tmp_path, colour_model, capsys):
    photos = tmp_path / "photos"
    write_image(photos / "red.jpg", RED)
    write_image(photos / "blue.JPG", BLUE)
    write_image(photos / "nested/png_named.jpg", 200, fmt="PNG", mode="L")  # grey PNG named .jpg: converted
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "corrupt.jpg").write_bytes(jpeg_bytes()[:40] + b"\x00" * 50)
    (photos / "notes.txt").write_text("not an image, not listed")
    out = tmp_path / "predictions.csv"
    assert main([str(photos), "--model", str(colour_model), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["file", "P(dog)", "label"] and len(lines) == 6
    by_file = {line.split()[0].removeprefix(str(photos) + "/"): line.split(maxsplit=1)[1] for line in lines[1:]}
    assert by_file["red.jpg"].endswith("dog") and by_file["blue.JPG"].endswith("cat")
    assert by_file["nested/png_named.jpg"].split()[-1] in ("cat", "dog")
    assert "skipped: empty file" in by_file["empty.jpg"]
    assert "skipped:" in by_file["corrupt.jpg"]
    rows = list(csv.DictReader(open(out)))
    assert [row["file"] for row in rows] == [line.split()[0] for line in lines[1:]]
    assert [row["skipped"] != "" for row in rows] == [row["p_dog"] == "" for row in rows]
    assert sum(row["p_dog"] != "" for row in rows) == 3
    assert not list(tmp_path.glob(f"{PREFIX}*"))


def test_zip_and_single_files_and_missing_paths(tmp_path, colour_model, capsys):
    archive = write_zip(tmp_path / "photos.zip", {"a/red.jpg": jpeg_bytes(RED), "b/blue.jpeg": jpeg_bytes(BLUE),
                                                  "readme.md": b"ignored"})
    single = write_image(tmp_path / "one.png", RED, fmt="PNG")
    assert main([str(archive), str(single), "--model", str(colour_model)]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert [line.split()[0] for line in lines] == [f"{archive}:a/red.jpg", f"{archive}:b/blue.jpeg", str(single)]
    assert [line.split()[-1] for line in lines] == ["dog", "cat", "dog"]
    assert main([str(tmp_path / "missing.jpg"), "--model", str(colour_model)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "missing.jpg not found" in error
    assert main([str(single), "--model", str(tmp_path / "absent.keras")]) == 1
    assert "absent.keras not found" in capsys.readouterr().err
    (tmp_path / "locked").mkdir()
    real = os.access
    with mock.patch.object(os, "access",
                           lambda path, mode: False if str(path).endswith("locked") else real(path, mode)):
        assert main([str(single), "--model", str(colour_model), "--out", str(tmp_path / "locked/p.csv")]) == 1
    assert "locked is not writable" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main([str(single), "--tta", str(len(TTA_VIEWS) + 1)])
    assert exit_info.value.code == 2


def test_any_file_name_survives_the_table_and_the_csv(tmp_path, colour_model, capsys):
    """Bytes that are not UTF-8 are written as \\xff (the CSV stays UTF-8); a newline, a comma
    or a quote is quoted as CSV does; the table shows every photo on a line of its own."""
    photos = tmp_path / "photos"
    names = [os.fsdecode(b"\xff\xfe.jpg"), "two\nlines.jpg", 'comma, "quote".jpg']
    for name in names:
        write_image(photos / name, RED)
    out = tmp_path / "predictions.csv"
    assert main([str(photos), "--model", str(colour_model), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4  # the header and one line per photo
    shown = sorted(line.split("  ")[0].strip().removeprefix(f"{photos}/") for line in lines[1:])
    assert shown == sorted(["\\xff\\xfe.jpg", "two\\nlines.jpg", 'comma, "quote".jpg'])
    with open(out, encoding="utf-8", newline="") as f:  # strict UTF-8
        rows = list(csv.DictReader(f))
    assert sorted(row["file"].removeprefix(f"{photos}/") for row in rows) == sorted(
        ["\\xff\\xfe.jpg", "two\nlines.jpg", 'comma, "quote".jpg'])
    assert [row["label"] for row in rows] == ["dog"] * 3


def test_a_single_file_draws_no_progress_bar(tmp_path, colour_model, capsys):
    assert main([str(write_image(tmp_path / "one.jpg", RED)), "--model", str(colour_model)]) == 0
    error = capsys.readouterr().err
    assert "predict:" not in error and "img" not in error, error


def test_tta_averages_the_image_and_its_mirror(colour_model):
    model = keras.models.load_model(colour_model)
    images = np.zeros((2, 32, 32, 3), np.uint8)
    images[:, :, :16, 0] = 255  # red on the left half only
    images[:, :8] = 0  # and not in the top rows: crops see different amounts of red
    views = tta_views(images.astype(np.float32), len(TTA_VIEWS))
    assert len(views) == 12 and all(view.shape == (2, 32, 32, 3) for view in views)
    np.testing.assert_array_equal(views[1], images[:, :, ::-1].astype(np.float32))
    single = [model.predict_on_batch(view.numpy() if hasattr(view, "numpy") else view).ravel() for view in views]
    np.testing.assert_allclose(predict_batch(model, images, 2), (single[0] + single[1]) / 2, atol=1e-6)
    np.testing.assert_allclose(predict_batch(model, images, 12), np.mean(single, axis=0), atol=1e-6)
    assert not np.allclose(single[2], single[4])  # the crops differ
    with pytest.raises(StageError, match="1 to 12 views"):
        tta_views(images.astype(np.float32), 0)


def test_predictions_stream(colour_model):
    read = []

    def sources():
        for i in range(1000):
            read.append(i)
            yield f"{i}.jpg", jpeg_bytes(RED), None

    predictions = classify(sources(), keras.models.load_model(colour_model), batch_size=4)
    first = next(predictions)
    assert first.name == "0.jpg" and first.label == "dog"
    assert len(read) <= 5  # one batch read ahead of the first answer, not the whole input


def competition_zip(tmp_path, ids, bad=(), shuffle_seed=0):
    """dogs-vs-cats.zip: train.zip, sampleSubmission.csv and a deflated test1.zip holding
    test1/<id>.jpg in a shuffled order (even ids red, odd ids blue)."""
    order = list(ids)
    random.Random(shuffle_seed).shuffle(order)
    members = {f"test1/{i}.jpg": b"\xff\xd8 not a jpeg" if i in bad else jpeg_bytes(RED if i % 2 == 0 else BLUE)
               for i in order}
    members["test1/"] = b""
    inner = write_zip(tmp_path / "test1.zip", members)
    outer = tmp_path / "dogs-vs-cats.zip"
    with zipfile.ZipFile(outer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(inner, "test1.zip")
        archive.writestr("train.zip", b"")
        archive.writestr("sampleSubmission.csv", "id,label\n")
    return outer


def test_submission_has_a_row_per_id_in_numeric_order(tmp_path, colour_model):
    archive = competition_zip(tmp_path, range(1, 16), bad={7})
    out = tmp_path / "submissions/submission.csv"
    rows, skipped = write_submission(archive, str(colour_model), out, clip=0.01, batch_size=4)
    assert rows == 15 and [image_id for image_id, _ in skipped] == ["7"]
    lines = out.read_text().splitlines()
    assert lines[0] == "id,label" and len(lines) == 16
    table = [(int(i), float(p)) for i, p in (line.split(",") for line in lines[1:])]
    assert [i for i, _ in table] == list(range(1, 16))  # 2 before 10: numeric, not text order
    for image_id, p in table:
        assert 0.01 <= p <= 0.99
        if image_id == 7:
            assert p == 0.5
        else:
            assert (p > 0.5) == (image_id % 2 == 0)
    # The bare test1.zip gives the same file.
    again = tmp_path / "again.csv"
    write_submission(tmp_path / "test1.zip", str(colour_model), again, clip=0.01, batch_size=7)
    assert again.read_text() == out.read_text()


def test_submission_errors_are_one_line(tmp_path, colour_model):
    with pytest.raises(StageError, match="submission.archive .*missing.zip not found.*kaggle competitions download"):
        write_submission(tmp_path / "missing.zip", str(colour_model), tmp_path / "s.csv")
    (tmp_path / "test1").mkdir()
    with pytest.raises(StageError, match="submission.archive .*test1 is a folder: give the zip itself"):
        write_submission(tmp_path / "test1", str(colour_model), tmp_path / "s.csv")
    empty = write_zip(tmp_path / "test1.zip", {"test1/cat.1.jpg": jpeg_bytes()})
    with pytest.raises(StageError, match="holds no test1/<id>.jpg images"):
        write_submission(empty, str(colour_model), tmp_path / "s.csv")
    assert not (tmp_path / "s.csv").exists()


def test_out_never_replaces_an_input_and_is_checked_before_the_work(tmp_path, colour_model, capsys):
    archive = write_zip(tmp_path / "photos.zip", {"red.jpg": jpeg_bytes(RED)})
    single = write_image(tmp_path / "one.jpg", RED)
    (tmp_path / "a_file").write_text("not a folder")
    kept = {path: path.read_bytes() for path in (archive, single)}
    for out, expected in ((archive, "is one of the inputs and would be overwritten"),
                          (single, "is one of the inputs and would be overwritten"),
                          (tmp_path, "is a folder: give a file in it"),
                          (tmp_path / "a_file/p.csv", "which is a file, not a folder"),
                          ("", "--out is empty")):
        assert main([str(archive), str(single), "--model", str(colour_model), "--out", str(out)]) == 2
        error = capsys.readouterr().err.strip()
        assert error.count("\n") == 0 and expected in error, error
    assert {path: path.read_bytes() for path in kept} == kept
    # The temporary of a --out another run writes into the folder is not taken for a picture.
    good = tmp_path / "good"
    write_image(good / "red.jpg", RED)
    write_image(good / f"{PREFIX}tmp-{os.getpid()}-0123abcd-pred.jpg", RED)
    assert main([str(good), "--model", str(colour_model), "--out", str(tmp_path / "pred.csv")]) == 0
    captured = capsys.readouterr()
    assert "skipped" not in captured.out and "1 images classified, 0 skipped" in captured.err


def test_sigterm_removes_the_unfinished_out_and_a_later_run_sweeps_killed_runs_debris(tmp_path, colour_model,
                                                                                      capsys, monkeypatch):
    photos = tmp_path / "photos"
    for i in range(6):
        write_image(photos / f"{i}.jpg", RED)
    out = tmp_path / "p.csv"
    out.write_text("the previous table\n")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    debris = tmp_path / f"{PREFIX}tmp-{dead.pid}-0123abcd-p.csv"  # what a SIGKILLed run left
    debris.write_text("half")
    real_classify = cli.classify

    def classify_then_terminated(*args, **kwargs):
        for number, prediction in enumerate(real_classify(*args, **kwargs)):
            if number == 3:
                os.kill(os.getpid(), signal.SIGTERM)  # `kill` or `timeout` while the table is written
            yield prediction

    monkeypatch.setattr(cli, "classify", classify_then_terminated)

    def killed(signum, frame):
        raise AssertionError("predict left SIGTERM to its default: killed by the signal")

    previous = signal.signal(signal.SIGTERM, killed)
    assert main([str(photos), "--model", str(colour_model), "--out", str(out), "--batch-size", "2"]) == 143
    assert "terminated" in capsys.readouterr().err
    assert out.read_text() == "the previous table\n" and not list(tmp_path.glob(f"{PREFIX}*"))
    assert signal.signal(signal.SIGTERM, previous) is killed  # the caller's handler is back


def test_a_closed_pipe_stops_the_table_not_the_csv(tmp_path, colour_model):
    photos = tmp_path / "photos"
    for i in range(40):
        write_image(photos / f"{i:02}.jpg", RED if i % 2 else BLUE)
    out = tmp_path / "x.csv"
    predict = f"{sys.executable} -m stages.predict {photos} --model {colour_model} --out {out} --batch-size 4"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", f"{predict} | head -1"], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.stdout.split() == ["file", "P(dog)", "label"]
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
    assert result.returncode == 0 and "40 images classified" in result.stderr
    assert len(out.read_text().splitlines()) == 41


def test_submission_prefers_test1_and_names_what_it_ignores(tmp_path, colour_model, capsys):
    # `other/1.jpg` sorts before `test1/1.jpg`: it must still not take id 1; `test1/01.jpg` is no Kaggle id.
    archive = write_zip(tmp_path / "test1.zip", {"other/1.jpg": jpeg_bytes(BLUE), "test1/1.jpg": jpeg_bytes(RED),
                                                 "test1/2.jpg": jpeg_bytes(BLUE), "test1/01.jpg": jpeg_bytes(RED)})
    rows, skipped = write_submission(archive, str(colour_model), tmp_path / "s.csv", clip=0.01)
    assert rows == 2 and skipped == []
    table = dict(line.split(",") for line in (tmp_path / "s.csv").read_text().splitlines()[1:])
    assert float(table["1"]) > 0.5 and float(table["2"]) < 0.5  # id 1 is test1/1.jpg, the red one
    out = capsys.readouterr().out
    assert "ignored other/1.jpg: id 1 is test1/1.jpg" in out
    assert "ignored test1/01.jpg: not test1/<id>.jpg" in out


def test_nothing_to_classify_is_an_error_and_every_left_out_image_is_named(tmp_path, colour_model, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--model", str(colour_model)]) == 1
    assert "error: no images in " in capsys.readouterr().err
    competition = competition_zip(tmp_path, [1, 2])  # test1.zip and train.zip inside: not opened
    assert main([str(competition), "--model", str(colour_model)]) == 1
    captured = capsys.readouterr()
    assert "dogs-vs-cats.zip:test1.zip  " in captured.out
    assert "skipped: a zip inside the zip: extract it" in captured.out
    assert "error: no image could be classified" in captured.err
    photos = tmp_path / "photos"
    write_image(tmp_path / "elsewhere/red.jpg", RED)
    photos.mkdir()
    os.symlink(tmp_path / "elsewhere", photos / "linked")  # a linked folder is followed
    os.symlink(photos, photos / "linked/loop")  # and a link loop ends
    os.symlink(tmp_path / "gone.jpg", photos / "broken.jpg")
    os.mkfifo(photos / "fifo.jpg")
    assert main([str(photos), "--model", str(colour_model)]) == 0
    rows = {line.split()[0].removeprefix(str(photos) + "/"): line for line in capsys.readouterr().out.splitlines()[1:]}
    assert sorted(rows) == ["broken.jpg", "fifo.jpg", "linked/red.jpg"]
    assert rows["linked/red.jpg"].endswith("dog")
    assert "skipped: a broken link" in rows["broken.jpg"] and "skipped: not a regular file" in rows["fifo.jpg"]


def test_messages_say_what_is_wrong_not_not_found(tmp_path, colour_model, capsys, monkeypatch):
    single = write_image(tmp_path / "one.jpg", RED)
    os.mkfifo(tmp_path / "fifo.zip")
    (tmp_path / "model.h5").write_bytes(b"an old Keras 2 file")
    (tmp_path / "notes.keras").write_text("my notes, not a model")
    cases = [([str(tmp_path / "fifo.zip")], 2, "fifo.zip is not a regular file (a FIFO?): give an image"),
             (["--model", str(tmp_path / "model.h5"), str(single)], 1, "model.h5 is not a .keras file"),
             (["--model", str(tmp_path), str(single)], 1, "is not a .keras file"),
             (["--model", str(tmp_path / "notes.keras"), str(single)], 1,
              "notes.keras could not be loaded as a Keras model (not a zip archive, which a .keras file is): "
              "give a model saved by Keras 3")]
    for argv, status, expected in cases:
        assert main(argv) == status
        error = capsys.readouterr().err.strip()
        assert error.count("\n") == 0 and expected in error and "dvc repro" not in error, error
    monkeypatch.chdir(tmp_path)  # not the project root: the catalog's models/finetuned.keras is not here
    assert main([str(single)]) == 1
    error = capsys.readouterr().err
    assert "which is not the project root: run predict from the project root" in error and "dvc repro" not in error
    with pytest.raises(StageError, match="submission.archive .*fifo.zip is not a regular file"):
        write_submission(tmp_path / "fifo.zip", str(colour_model), tmp_path / "s.csv")
