import numpy as np
import pytest

from dogs_vs_cats.errors import StageError
from dogs_vs_cats.mnist import download, load_mnist, source
from tests.workspace import copy_workspace, dvc, stages_run, update_params, write_mnist_npz


def test_local_npz_in_keras_format_is_read(tmp_path):
    x_train, y_train, x_test, y_test = load_mnist(str(write_mnist_npz(tmp_path / "m.npz", train=30, test=10)))
    assert x_train.shape == (30, 28, 28) and y_train.shape == (30,) and x_test.shape == (10, 28, 28)
    assert x_train.dtype == np.uint8 and set(np.unique(y_test)) <= set(range(10))


def test_bad_npz_files_are_clear_errors(tmp_path):
    np.savez(tmp_path / "wrong_keys.npz", images=np.zeros((2, 28, 28)))
    with pytest.raises(StageError, match="not Keras' mnist.npz"):
        load_mnist(str(tmp_path / "wrong_keys.npz"))
    np.savez(tmp_path / "wrong_shape.npz", x_train=np.zeros((2, 32, 32)), y_train=np.zeros(2),
             x_test=np.zeros((1, 28, 28)), y_test=np.zeros(1))
    with pytest.raises(StageError, match="N x 28 x 28"):
        load_mnist(str(tmp_path / "wrong_shape.npz"))
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(StageError, match="not Keras' mnist.npz"):
        load_mnist(str(tmp_path / "text.npz"))


def test_failed_download_says_how_to_fix_it(monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz")
    monkeypatch.setattr("keras.utils.get_file", offline)
    with pytest.raises(StageError, match=r"could not download MNIST .*~/.keras/datasets.*mnist.npz"):
        download()


@pytest.mark.slow
def test_mnist_trains_on_a_tracked_copy_of_mnist_npz(first_run, tmp_path):
    """`mnist` reads data/mnist.npz, a DVC output with a hash: the data it trained on is in
    dvc.lock, and new bytes behind the mnist.npz path re-run it once copied again."""
    workspace = copy_workspace(first_run[0], tmp_path / "ws")  # where `dvc repro` ran every stage
    # What `dvc repro mnist` runs from nothing, and what the session's run ran of it.
    assert stages_run(dvc(workspace, "repro", "--dry", "-f", "mnist").stdout) == {"check", "mnist_data", "mnist"}
    assert {"check", "mnist_data", "mnist"} <= stages_run(first_run[1])
    assert (workspace / "data/mnist.npz").read_bytes() == (workspace / "mnist_small.npz").read_bytes()
    assert "data/mnist.npz" in (workspace / "dvc.lock").read_text()
    assert stages_run(dvc(workspace, "repro", "-f", "mnist_data").stdout) == {"check", "mnist_data"}  # same bytes
    assert stages_run(dvc(workspace, "repro", "mnist").stdout) == set()
    write_mnist_npz(workspace / "mnist_small.npz", seed=1)  # other digits, same path
    assert stages_run(dvc(workspace, "repro", "-f", "mnist_data").stdout) == {"check", "mnist_data"}
    assert "mnist:" in dvc(workspace, "status", "mnist").stdout  # its dep changed
    assert stages_run(dvc(workspace, "repro", "mnist").stdout) == {"mnist"}
    update_params(workspace / "params.yaml", {"mnist": {"npz": "missing.npz"}})
    failed = dvc(workspace, "repro", "mnist", check=False)
    assert failed.returncode and "mnist.npz missing.npz not found" in failed.stderr + failed.stdout


def test_truncated_files_bad_labels_and_folders_are_one_line_errors(tmp_path):
    good = write_mnist_npz(tmp_path / "good.npz", train=30, test=10)
    (tmp_path / "truncated.npz").write_bytes(good.read_bytes()[:-200])  # its zip directory cut off
    with pytest.raises(StageError, match="truncated.npz is not Keras' mnist.npz .*copy it again"):
        load_mnist(str(tmp_path / "truncated.npz"))
    for label in (37, -3):
        x_train, y_train, x_test, y_test = load_mnist(str(good))
        y_test = y_test.astype(np.int64)
        y_test[4] = label
        np.savez(tmp_path / "labels.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
        with pytest.raises(StageError, match=f"y_test holds 1 labels that are not digits 0-9 \\(such as {label}\\)"):
            load_mnist(str(tmp_path / "labels.npz"))
    (tmp_path / "folder.npz").mkdir()
    with pytest.raises(StageError, match="mnist.npz .*folder.npz is a folder"):
        source(str(tmp_path / "folder.npz"))
