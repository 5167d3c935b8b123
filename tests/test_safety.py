"""Nothing lost, round three (issue 33): the safety machinery destroys nothing it protects,
a failed run leaves the last good state whole, and dead ends are one clear line
(docs/real-data.md#what-survives-what). The tests marked `slow` go through DVC or make."""

import errno
import io
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from dogs_vs_cats import stage, visualize
from dogs_vs_cats.archives import BadImage, check_image
from dogs_vs_cats.check import check
from dogs_vs_cats.cli import main as predict
from dogs_vs_cats.errors import StageError
from dogs_vs_cats.features import write_features
from dogs_vs_cats.mnist import load_mnist
from dogs_vs_cats.outputs import atomic_file, DEBRIS, PREFIX, sweep_debris
from dogs_vs_cats.split import make_split, why_unusable
from dogs_vs_cats.submission import id_gap
from dogs_vs_cats.workspace import TINY_PARAMS
from tests.helpers import jpeg_bytes, section, write_zip
from tests.test_predict import colour_model, competition_zip, RED, write_image  # noqa: F401  (a fixture)
from tests.workspace import (
    BIN,
    copy_project,
    copy_workspace,
    dvc,
    environment,
    REPO,
    run,
    stages_run,
    update_params,
)


def dead_pid():
    """The pid of a process that has exited: what a SIGKILLed run's debris names."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def debris_name(pid, target, kind="tmp"):
    return f"{PREFIX}{kind}-{pid}-0123abcd-{target}"


# --- 1. the sweep removes only what this project wrote, only where it writes --------------------

def test_a_stage_sweeps_only_its_own_debris_beside_its_outputs(tmp_path):
    project = copy_project(tmp_path / "project")
    dead = dead_pid()
    users = [project / "data/raw/.tmp-99998-x.zip", project / f"data/raw/.tmp-{dead}-y.zip",
             project / f"data/.old-{dead}-checked.txt",  # the old naming: a user may have chosen it
             project / "data/raw" / debris_name(dead, "x.zip"),  # our pattern, but where check never writes
             project / "data" / debris_name(dead, "split")]  # another output's: its own stage sweeps it
    ours = project / "data" / debris_name(dead, "checked.txt")
    live = project / "data" / debris_name(os.getpid(), "checked.txt")  # a running stage's
    for path in (*users, ours, live):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("kept?")
    result = subprocess.run([sys.executable, "-m", "stages.check", "data/checked.txt"], cwd=project,
                            env=environment(), capture_output=True, text=True)
    assert "Traceback" not in result.stderr, result.stderr
    assert [path for path in users if not path.exists()] == []
    assert not ours.exists() and live.exists()


def test_predict_out_in_a_home_folder_does_not_walk_it(tmp_path, colour_model):  # noqa: F811
    home = tmp_path / "home"
    dead = dead_pid()
    nested = [home / "photos" / debris_name(dead, "p.csv"), home / f"projects/.tmp-{dead}-notes.txt",
              home / "projects" / debris_name(dead, "model.keras", "old")]
    for path in nested:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("mine")
    beside = home / debris_name(dead, "p.csv")  # what a killed predict --out ~/p.csv left
    beside.write_text("half a table")
    other = home / debris_name(dead, "q.csv")  # another output's: not this run's business
    other.write_text("half another table")
    single = write_image(tmp_path / "one.jpg", RED)
    assert predict([str(single), "--model", str(colour_model), "--out", str(home / "p.csv")]) == 0
    assert all(path.exists() for path in nested) and other.exists() and not beside.exists()
    assert (home / "p.csv").read_text().startswith("file,p_dog,label,skipped")


def test_the_sweep_looks_inside_a_folder_output_but_not_below_it(tmp_path):
    dead = dead_pid()
    inside = tmp_path / "out" / debris_name(dead, "gradcam.png")  # atomic_file's in the folder
    below = tmp_path / "out/sub" / debris_name(dead, "x.png")
    below.parent.mkdir(parents=True)
    inside.write_text("x")
    below.write_text("x")
    sweep_debris([tmp_path / "out"])
    assert not inside.exists() and below.exists()
    assert DEBRIS.fullmatch(debris_name(1, "head.keras")) and not DEBRIS.fullmatch(".tmp-1-head.keras")


# --- 2. writes to what is not a regular file -----------------------------------------------------

def test_out_through_a_link_replaces_what_it_names_and_the_link_stays(tmp_path, colour_model):  # noqa: F811
    single = write_image(tmp_path / "one.jpg", RED)
    (tmp_path / "tables").mkdir()
    real = tmp_path / "tables/p.csv"
    real.write_text("the previous table\n")
    link = tmp_path / "p.csv"
    link.symlink_to("tables/p.csv")
    dangling = tmp_path / "new.csv"
    dangling.symlink_to("tables/new.csv")  # a link to a file not written yet
    for out in (link, dangling):
        assert predict([str(single), "--model", str(colour_model), "--out", str(out)]) == 0
        assert out.is_symlink()
    assert real.read_text().startswith("file,p_dog") and (tmp_path / "tables/new.csv").read_text() == real.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.csv", "one.jpg", "p.csv", "tables"]


def test_out_to_a_fifo_streams_into_it(tmp_path, colour_model):  # noqa: F811
    single = write_image(tmp_path / "one.jpg", RED)
    fifo = tmp_path / "table.fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    assert predict([str(single), "--model", str(colour_model), "--out", str(fifo)]) == 0
    reader.join(timeout=60)
    assert received and received[0].splitlines()[0] == "file,p_dog,label,skipped"
    assert fifo.is_fifo() and sorted(p.name for p in tmp_path.iterdir()) == ["one.jpg", "table.fifo"]


def test_out_to_a_socket_or_dev_full_is_one_line(tmp_path, colour_model, capsys):  # noqa: F811
    single = write_image(tmp_path / "one.jpg", RED)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "sock"))
    try:
        assert predict([str(single), "--model", str(colour_model), "--out", str(tmp_path / "sock")]) == 2
    finally:
        server.close()
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "sock is a socket, not a file it can replace" in error, error
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    assert predict([str(single), "--model", str(colour_model), "--out", "/dev/full"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line and not line.startswith("predict: ")]
    assert errors == ["error: no space left on device writing /dev/full: free space and run again"]
    assert Path("/dev/full").is_char_device()


def test_a_file_size_limit_is_one_line_and_leaves_nothing_half_written(tmp_path):
    target = tmp_path / "big.bin"
    target.write_bytes(b"the previous version")
    code = ("import resource, signal, sys\n"
            "from dogs_vs_cats.outputs import atomic_file\n"
            "from dogs_vs_cats.errors import StageError\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of the signal\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))\n"
            "try:\n"
            "    with atomic_file(sys.argv[1]) as tmp:\n"
            "        tmp.write_bytes(bytes(200_000))\n"
            "except StageError as e:\n"
            "    print(e)\n")
    result = subprocess.run([sys.executable, "-c", code, str(target)], cwd=REPO, capture_output=True, text=True)
    assert result.stdout.strip() == (f"file too large for its file system (or `ulimit -f`) writing {target}: "
                                     f"free space and run again"), result.stderr
    assert target.read_bytes() == b"the previous version" and os.listdir(tmp_path) == ["big.bin"]


def test_a_full_disk_while_writing_keeps_the_previous_file(tmp_path):
    target = tmp_path / "head.keras"
    target.write_text("the previous model")
    for code, words in ((errno.ENOSPC, "no space left on device"), (errno.EDQUOT, "disk quota exceeded")):
        with pytest.raises(StageError, match=f"^{words} writing .*head.keras: free space and run again$"):
            with atomic_file(target) as tmp:
                tmp.write_text("half")
                raise OSError(code, os.strerror(code))
        assert target.read_text() == "the previous model" and os.listdir(tmp_path) == ["head.keras"]


# --- 5. predict --out inside an input folder -------------------------------------------------------

def test_out_inside_an_input_folder_or_onto_a_linked_picture_is_refused(tmp_path, colour_model, capsys):  # noqa: F811
    photos = tmp_path / "photos"
    write_image(photos / "a.jpg", RED)
    write_image(tmp_path / "elsewhere/b.jpg", RED)
    (photos / "linked").symlink_to(tmp_path / "elsewhere")
    kept = {path: path.read_bytes() for path in (photos / "a.jpg", tmp_path / "elsewhere/b.jpg")}
    for out, expected in ((photos / "a.jpg", "is inside the input folder"),
                          (photos / "new.csv", "is inside the input folder"),
                          (tmp_path / "elsewhere/b.jpg", "is one of the inputs and would be overwritten")):
        assert predict([str(photos), "--model", str(colour_model), "--out", str(out)]) == 2
        error = capsys.readouterr().err.strip()
        assert error.count("\n") == 0 and expected in error, error
    assert {path: path.read_bytes() for path in kept} == kept and not (photos / "new.csv").exists()


# --- 6-8. outputs are exactly what this run produced, all or nothing -------------------------------

@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """A model shaped as finetune saves it (preprocess, vgg16, head), a split and evaluate's predictions."""
    from dogs_vs_cats.nets import conv_base, dense_head, stack
    root = tmp_path_factory.mktemp("finetuned")
    keras.utils.set_random_seed(0)
    base = conv_base("none", 48)
    stack(base, dense_head(base.output_shape[1:], 8), "vgg16", "finetuned").save(root / "finetuned.keras")
    predictions = []
    for split in ("train", "test"):
        for label, (kind, folder) in enumerate((("cat", "cats"), ("dog", "dogs"))):
            for i in range(2):
                write_image(root / "split" / split / folder / f"{kind}.{i}.jpg", (40 + 90 * label, 80, 120 - 50 * i))
                if split == "test":
                    predictions.append({"image": f"{kind}.{i}.jpg", "label": label, "probability": 0.3 + 0.1 * i})
    (root / "predictions.json").write_text(json.dumps({"predictions": predictions}))
    return root


def draw(root, output, layers):
    settings = section("visualize", layers=layers, channels=2, filters=2, ascent_steps=1, ascent_size=32,
                       gradcam_images=2, augmentations=1, most_wrong=2)
    return visualize.visualize(root / "finetuned.keras", root / "predictions.json", root / "split", output, 48,
                             section("augment"), settings)


def test_visualize_holds_exactly_this_runs_pictures_even_with_one_layer(finetuned, tmp_path, monkeypatch):
    output = tmp_path / "visualize"
    output.mkdir()
    for stale in ("activations_block4_conv1.png", "filters_block4_conv1.png", "notes.txt"):
        (output / stale).write_text("a layer no longer configured, a file dropped there")
    drawn = draw(finetuned, output, ["block1_conv1"])  # one layer: a model of one output
    expected = ["activations_block1_conv1.png", "augmentation.png", "filters_block1_conv1.png", "gradcam.png",
                "most_wrong.png"]
    assert sorted(path.name for path in drawn) == expected  # what the stage counts
    assert sorted(path.name for path in output.iterdir()) == expected
    assert all(Image.open(path).format == "PNG" for path in drawn)
    before = {path.name: path.read_bytes() for path in output.iterdir()}

    def fails(*args, **kwargs):
        raise StageError("grad-cam failed")
    monkeypatch.setattr(visualize, "grad_cam", fails)  # the last picture: every other one was drawn
    with pytest.raises(StageError, match="grad-cam failed"):
        draw(finetuned, output, ["block2_conv1"])
    assert {path.name: path.read_bytes() for path in output.iterdir()} == before
    assert sorted(os.listdir(tmp_path)) == ["visualize"]


def test_features_are_written_all_or_nothing(tmp_path):
    split = tmp_path / "split"
    for name in ("train", "validation", "test"):
        for kind, folder in (("cat", "cats"), ("dog", "dogs")):
            write_image(split / name / folder / f"{kind}.0.jpg", RED)
    output = tmp_path / "features"
    output.mkdir()
    (output / ".gitignore").write_text("/train_features.npy\n")  # DVC's: not a features file, it stays
    for name in ("train", "validation", "test"):
        for kind in ("features", "labels"):
            np.save(output / f"{name}_{kind}.npy", np.zeros(1))
    before = {path.name: path.read_bytes() for path in output.iterdir()}
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D()])
    (split / "test/dogs/dog.0.jpg").write_bytes(b"not a jpeg")  # the last split fails
    with pytest.raises(StageError, match="could not read an image"):
        list(write_features(model, split, 32, 4, output))
    assert {path.name: path.read_bytes() for path in output.iterdir()} == before
    assert sorted(os.listdir(tmp_path)) == ["features", "split"]
    write_image(split / "test/dogs/dog.0.jpg", RED)
    assert [name for name, _, _ in write_features(model, split, 32, 4, output)] == ["train", "validation", "test"]
    assert np.load(output / "test_features.npy").shape == (2, 3) and (output / ".gitignore").exists()


# --- 9, 11. the schema and `check` ----------------------------------------------------------------

@pytest.mark.parametrize("value,said", [("", "empty"), (None, "null")])
def test_an_empty_or_null_archive_is_one_line_naming_the_key(tmp_path, value, said):
    project = copy_project(tmp_path / "project", {"data": {"archive": value}})
    result = subprocess.run([sys.executable, "-m", "stages.check", "data/checked.txt"], cwd=project,
                            env=environment(), capture_output=True, text=True)
    error = result.stderr.strip()
    assert result.returncode == 1 and error.count("\n") == 0, error
    assert f"data.archive is {said}: set it to the path of a zip" in error and "ERROR: unexpected error" in error


def test_schema_rules_the_stages_relied_on(tmp_path):
    with pytest.raises(StageError, match="finetune.unfreeze_from is block5_pool, a pooling layer without weights"):
        section("finetune", unfreeze_from="block5_pool")
    with pytest.raises(StageError, match="unfreeze_from is block4_pool"):
        section("finetune", unfreeze_from="block4_pool")
    assert section("finetune", unfreeze_from="block4_conv3").unfreeze_from == "block4_conv3"
    with pytest.raises(StageError, match=r"image.size is 40, but the small convnet needs at least 46"):
        section("image", size=40)
    assert section("image", size=46).size == 46


def test_an_mnist_npz_of_floats_is_refused(tmp_path):
    images = np.random.default_rng(0).uniform(0, 1, (4, 28, 28)).astype(np.float32)
    labels = np.arange(4, dtype=np.uint8)
    np.savez(tmp_path / "mnist.npz", x_train=images, y_train=labels, x_test=images, y_test=labels)
    with pytest.raises(StageError) as error:
        load_mnist(tmp_path / "mnist.npz")
    assert "x_train holds float32 values (0.00019 to 1), not Keras' 8-bit pixels 0..255" in str(error.value)
    assert "\n" not in str(error.value)


def test_check_refuses_another_stages_output_as_an_input(tmp_path, monkeypatch):
    project = copy_project(tmp_path / "project", {"data": {"archive": "data/split/train.zip"},
                                                  "base": {"weights": "models/vgg16_notop.weights.h5"}})
    monkeypatch.chdir(project)
    with pytest.raises(StageError) as error:
        check()
    message = str(error.value)
    assert "data.archive data/split/train.zip is inside data/split, an output of the `split` stage" in message
    assert "base.weights models/vgg16_notop.weights.h5 is an output of the `weights` stage" in message
    update_params(project / "params.yaml", {"data": {"archive": "data/sample/train.zip"},
                                            "base": {"weights": "none"}, "mnist": {"npz": ""}})
    check()  # the sample's archive, which the sample stage writes, is the default input


# --- 12. words that say what is true ----------------------------------------------------------------

def test_the_restore_hint_names_commands_that_restore(tmp_path, monkeypatch, capsys):
    run(tmp_path, "git", "init", "-q")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/data.json").write_text("{}")
    run(tmp_path, "git", "add", "metrics/data.json")
    monkeypatch.setenv("DVC_STAGE", "split")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setattr(stage, "restore_from_dvc_cache", lambda name, root: ([], ["data/split", "metrics/data.json"]))
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        stage.restore_under_dvc()
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["could not restore metrics/data.json (not cached by DVC): `git checkout metrics/data.json`",
                     "could not restore data/split (not in this machine's DVC cache): `dvc pull` them from the "
                     "remote, or `dvc repro split` makes them again"]


def test_kaggles_test_set_as_data_archive_says_so(tmp_path):
    archive = write_zip(tmp_path / "test1.zip", {f"test1/{i}.jpg": jpeg_bytes() for i in range(1, 30)})
    with pytest.raises(StageError) as error:
        make_split(archive, {"train": 4, "validation": 2, "test": 2}, output=tmp_path / "split",
                   report=tmp_path / "data.json")
    message = str(error.value)
    assert "it holds Kaggle's test set (test1/<id>.jpg, unlabelled" in message
    assert "point data.archive at train.zip" in message and "larger archive" not in message


def test_a_link_to_itself_is_not_called_broken(tmp_path, colour_model, capsys):  # noqa: F811
    photos = tmp_path / "photos"
    write_image(photos / "red.jpg", RED)
    (photos / "loop.jpg").symlink_to("loop.jpg")
    (photos / "gone.jpg").symlink_to(tmp_path / "gone.jpg")
    assert predict([str(photos), "--model", str(colour_model)]) == 0
    rows = {line.split()[0].removeprefix(f"{photos}/"): line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "skipped: a symbolic link loop" in rows["loop.jpg"] and "broken" not in rows["loop.jpg"]
    assert "skipped: a broken link" in rows["gone.jpg"]


def test_skip_reasons_are_whole_and_counted_by_kind():
    buffer = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(buffer, format="PNG")  # 400 million pixels, a few KB
    with pytest.raises(BadImage) as error:
        check_image(buffer.getvalue())
    bomb = str(error.value)
    assert bomb.startswith("too large: ") and not bomb.endswith(",") and "DOS" not in bomb
    skipped = [{"member": "train/cat.1.jpg", "reason": bomb},
               {"member": "x/cat.2.jpg", "reason": "duplicate of train/cat.2.jpg"},
               {"member": "x/cat.3.jpg", "reason": "duplicate of train/cat.3.jpg"},
               {"member": "train/dog.4.jpg", "reason": "corrupt image (broken data stream (at 3))"}]
    assert why_unusable(skipped, []) == ("; 1 too large (e.g. train/cat.1.jpg); 2 duplicate (e.g. x/cat.2.jpg); "
                                         "1 corrupt image (e.g. train/dog.4.jpg)")


# --- 14. the submission names the ids it lacks ------------------------------------------------------

def test_the_submission_stage_names_missing_ids(tmp_path, colour_model, monkeypatch, capsys):  # noqa: F811
    from stages.submission import main
    archive = competition_zip(tmp_path, [1, 2, 4, 5, 6, 9])
    project = copy_project(tmp_path / "project", {"submission": {"archive": str(archive), "batch_size": 4}})
    monkeypatch.chdir(project)
    main(str(colour_model), "submission.csv")
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("wrote submission.csv: 6 rows") and line.endswith("3 ids missing of 1..9: 3, 7-8")
    assert id_gap(range(1, 12_500)) == "1 id missing of 1..12500: 12500"  # Kaggle's last id lost
    assert id_gap(range(1, 13)) == "no id missing of 1..12"


def test_the_submissions_memory_does_not_follow_the_numbers_in_names(tmp_path, colour_model):  # noqa: F811
    archive = competition_zip(tmp_path, [1, 2, 123456789012, 99999999999999999999999])
    project = copy_project(tmp_path / "project", {"submission": {"archive": str(archive), "batch_size": 4}})
    limit = 3 * 2**30  # TensorFlow and the model fit; a set of the ids up to the highest would need terabytes
    result = subprocess.run([sys.executable, "-m", "stages.submission", str(colour_model), "submission.csv"],
                            cwd=project, env=environment(), capture_output=True, text=True, timeout=600,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].endswith(
        "no id missing of 1..2; 2 ids outside Kaggle's 1..12500, kept as they are: 123456789012, "
        "99999999999999999999999")
    rows = (project / "submission.csv").read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in rows] == ["1", "2", "123456789012", "99999999999999999999999"]
    many = [*range(1, 12_500), *range(12_501, 12_520), 10**30]  # Kaggle's size: a pass over the ids
    assert id_gap(many) == ("1 id missing of 1..12500: 12500; 20 ids outside Kaggle's 1..12500, kept as they are: "
                            "12501-12519, 1000000000000000000000000000000")


# --- 15. a diverging run never replaces a good model ---------------------------------------------

def test_a_diverging_training_stops_in_one_line_and_keeps_the_previous_model(tmp_path, monkeypatch, capsys):
    from stages.train_head import main
    settings = {**TINY_PARAMS["train_head"], "epochs": 3, "lr": 1e30}
    project = copy_project(tmp_path / "project", {**TINY_PARAMS, "train_head": settings})
    rng = np.random.default_rng(0)
    for split, count in (("train", 16), ("validation", 8), ("test", 8)):
        (project / "data/features").mkdir(parents=True, exist_ok=True)
        np.save(project / f"data/features/{split}_features.npy", rng.random((count, 1, 1, 16), np.float32))
        np.save(project / f"data/features/{split}_labels.npy", np.tile(np.float32([0, 1]), count // 2))
    for path, text in (("models/head.keras", "the previous model"), ("dvclive/train_head/metrics.json", "{}"),
                       ("dvclive/train_head/plots/metrics/train/loss.tsv", "step\tloss\n0\t0.5\n")):
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text(text)
    kept = {path: path.read_bytes() for folder in ("models", "dvclive") for path in (project / folder).rglob("*")
            if path.is_file()}
    monkeypatch.chdir(project)
    monkeypatch.setattr(sys, "argv", ["stages/train_head.py", "data/features", "models/head.keras",
                                      "dvclive/train_head"])
    with pytest.raises(SystemExit) as exit_info:
        stage.run(main, inputs=("FEATURES",), outputs=("MODEL", "LOGS"))
    error = capsys.readouterr().err
    errors = [line for line in error.splitlines() if line.startswith("error:")]
    assert exit_info.value.code == 1 and "Traceback" not in error and len(errors) == 1, error
    assert errors[0].startswith("error: train_head: the loss became nan in epoch 1, so training stopped and the "
                                "previous model was kept: the learning rate 1e+30 is likely too high"), error
    assert {path: path.read_bytes() for path in kept} == kept
    assert [path for folder in ("models", "dvclive") for path in (project / folder).rglob("*")
            if path.is_file() and path not in kept] == []  # nor a temporary left


def test_evaluate_and_predict_refuse_a_model_whose_outputs_are_not_finite(tmp_path, monkeypatch, capsys):
    from dogs_vs_cats.evaluate import evaluate
    monkeypatch.chdir(tmp_path)
    head = keras.Sequential([keras.Input((1, 1, 4)), keras.layers.Flatten(),
                             keras.layers.Dense(1, activation="sigmoid")])
    head.layers[-1].set_weights([np.full((4, 1), np.nan, np.float32), np.zeros(1, np.float32)])
    Path("models").mkdir()
    head.save("models/head.keras")
    Path("features").mkdir()
    np.save("features/test_features.npy", np.ones((6, 1, 1, 4), np.float32))
    np.save("features/test_labels.npy", np.float32([0, 1, 0, 1, 0, 1]))
    with pytest.raises(StageError) as error:
        evaluate(Path("models/head.keras"), Path("features"), Path("metrics/eval/head"), 4)
    assert str(error.value) == ("models/head.keras gives 6 of 6 outputs that are not finite (NaN or infinite): its "
                                "training diverged; retrain it with a lower learning rate (`dvc repro train_head`)")
    assert not Path("metrics").exists()
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.layers[-1].set_weights([np.full((3, 1), np.nan, np.float32), np.zeros(1, np.float32)])
    model.save("diverged.keras")
    write_image(tmp_path / "red.jpg", RED)
    assert predict([str(tmp_path / "red.jpg"), "--model", "diverged.keras", "--out", "p.csv"]) == 1
    assert capsys.readouterr().err.strip() == (
        "error: diverged.keras holds weights that are not finite (NaN or infinite), so its outputs are not either: "
        "its training diverged; retrain it with a lower learning rate (train it again)")
    assert not Path("p.csv").exists()
    # finite weights whose output is not: red's 220 * 1e38 - 30 * 1e38 is inf - inf, NaN
    model.layers[-1].set_weights([np.float32([[1e38], [-1e38], [0]]), np.zeros(1, np.float32)])
    model.save("overflows.keras")
    assert predict([str(tmp_path / "red.jpg"), "--model", "overflows.keras", "--out", "p.csv"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"error: the model gives P(dog) nan for {tmp_path / 'red.jpg'}, not a probability: its training diverged; "
        f"retrain it with a lower learning rate")
    assert not Path("p.csv").exists()


# --- through DVC and make -----------------------------------------------------------------------

FEATURES = [f"data/features/{split}_{kind}.npy" for split in ("train", "validation", "test")
            for kind in ("features", "labels")]


@pytest.fixture
def ws(first_run, tmp_path):
    """A copy of the session's workspace, where the whole DAG (sample, split, weights and
    features among it) ran through DVC, committed."""
    return copy_workspace(first_run[0], tmp_path / "ws")


def wait_group(pid, seconds=120):
    """Wait until no process of the group `pid` is left (a restore may take seconds)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


@pytest.mark.slow  # a DVC workspace and its cache
@pytest.mark.parametrize("signum,code,word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_a_signal_in_a_stages_first_second_restores_its_outputs(ws, signum, code, word):
    before = {path: (ws / path).read_bytes() for path in FEATURES}
    for path in FEATURES:  # what DVC does before it starts the command
        (ws / path).unlink()
    process = subprocess.Popen([sys.executable, "-m", "stages.features", "data/split", "models/vgg16_notop.weights.h5",
                                "data/features"], cwd=ws, env=dict(environment(), DVC_STAGE="features",
                                                                     DVC_ROOT=str(ws)),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(1)  # importing TensorFlow: seconds before the stage's own handling is in place
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == code and "Traceback" not in stderr, stderr
    assert stderr.splitlines()[-1].startswith(word), stderr
    assert {path: (ws / path).read_bytes() for path in FEATURES} == before


@pytest.mark.slow  # `dvc repro`
def test_sigterm_a_second_after_dvc_starts_features_restores_them(ws):
    before = {path: (ws / path).read_bytes() for path in FEATURES}
    process = subprocess.Popen([str(BIN / "dvc"), "repro", "-f", "-s", "features"], cwd=ws, env=environment(),
                               start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while (ws / FEATURES[0]).exists():  # DVC deletes the outputs, then starts the command
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    time.sleep(1)
    os.killpg(process.pid, signal.SIGTERM)  # as `timeout` and `kill` of a job do: the whole group
    output, _ = process.communicate(timeout=300)
    wait_group(process.pid)
    assert "Running stage 'features'" in output
    assert {path: (ws / path).read_bytes() for path in FEATURES} == before


def split_files(ws):
    return {str(path.relative_to(ws)): path.read_bytes() for path in sorted((ws / "data/split").rglob("*.jpg"))}


@pytest.mark.slow  # `dvc repro`, three times
def test_check_runs_again_for_params_it_passed_before(ws):
    shutil.copy(ws / "data/sample/train.zip", ws / "raw.zip")
    update_params(ws / "params.yaml", {"data": {"archive": "raw.zip"}})
    dvc(ws, "repro", "split")  # params A
    update_params(ws / "params.yaml", {"split": {"order": "random"}})
    dvc(ws, "repro", "split")  # params B
    before = split_files(ws)
    update_params(ws / "params.yaml", {"split": {"order": "book"}})  # A again, its archive gone
    (ws / "raw.zip").unlink()
    result = dvc(ws, "repro", "split", check=False)
    assert result.returncode != 0 and stages_run(result.stdout) == {"check"}, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: data.archive raw.zip not found"), result.stderr
    assert split_files(ws) == before


@pytest.mark.slow  # make and `dvc exp run`
def test_make_passes_any_path_to_the_params_as_it_is(ws):
    shutil.copytree(REPO / "conf", ws / "conf")
    shutil.copy(REPO / "Makefile", ws / "Makefile")
    dvc(ws, "config", "hydra.enabled", "true")
    run(ws, "git", "add", "-A")
    run(ws, "git", "commit", "-qm", "make")
    venv = Path(sys.prefix)
    for value in ("null", "données/a,b=c.zip", "it's here.zip"):
        result = run(ws, "make", f"VENV={venv}", "-o", f"{venv}/.installed", "run", f"DATA={value}", check=False)
        errors = [line for line in result.stderr.splitlines() if line.startswith(("error:", "ERROR:"))]
        assert result.returncode != 0 and errors, result.stderr
        assert errors[0].startswith(f"error: data.archive {value} not found: "), result.stderr


@pytest.mark.slow  # `dvc metrics show`
def test_a_fresh_clones_metrics_show_loads_every_metric(tmp_path):
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):  # what a clone holds once the working tree is committed
        if (REPO / name).is_file():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, tmp_path / name)
    run(tmp_path, "git", "init", "-q")
    result = dvc(tmp_path, "metrics", "show")
    assert "failed to load" not in result.stdout + result.stderr, result.stdout + result.stderr
    assert "metrics/evaluate.json" in result.stdout
