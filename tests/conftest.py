"""Shared test helpers: tiny images and archives, the first run of the DAG, going back to it. The
workspaces themselves come from stages/workspace.py, which bench/ uses too."""

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

# Shared with bench/; the test modules import them from here.
from stages.workspace import (  # noqa: F401
    BIN, copy_workspace, dvc, environment, make_workspace, REPO, run, stages_run, tamper_keeping_size_and_mtime,
    TINY_PARAMS, update_params, write_mnist_npz)


def jpeg_bytes(colour=(200, 30, 30), size=(40, 30), mode="RGB", fmt="JPEG"):
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, format=fmt)
    return buffer.getvalue()


def write_zip(path, members, compression=zipfile.ZIP_STORED):
    """members: {name: bytes} or {name: (bytes, external_attr)}."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = compression
            if isinstance(data, tuple):
                data, info.external_attr = data
            archive.writestr(info, data)
    return path


def kaggle_members(per_class, colours=((90, 60, 40), (220, 220, 210))):
    return {f"train/{kind}.{i}.jpg": jpeg_bytes(colour, (30 + i % 7, 40))
            for kind, colour in zip(("cat", "dog"), colours) for i in range(per_class)}


@pytest.fixture(scope="session")
def first_run(tmp_path_factory):
    """The whole DAG run once on the tiny params and committed: (workspace, `dvc repro`'s
    output). Test modules copy it instead of computing it again."""
    path = make_workspace(tmp_path_factory.mktemp("first_run") / "ws")
    result = dvc(path, "repro")
    run(path, "git", "add", "-A")
    run(path, "git", "commit", "-qm", "first run")
    return path, result.stdout


def restore(workspace):
    """Back to the last commit without recomputing anything: git's files (params.yaml,
    dvc.lock, the uncached metrics and logs), then DVC's outputs from the cache."""
    run(workspace, "git", "checkout", "--", ".")
    dvc(workspace, "checkout", "--force")
    status = dvc(workspace, "status").stdout
    assert "up to date" in status, status


@pytest.fixture
def rng():
    return np.random.default_rng(0)
