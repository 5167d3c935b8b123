"""Every stage's entry point, in process and in the DAG's order, on the tiny params: what
`dvc repro` runs, without DVC (the fast tier's view of the whole pipeline)."""

import importlib
import json
import os
from pathlib import Path

import keras
import pytest
from ruamel.yaml import YAML

from dogs_vs_cats.catalog import MODELS, TRAINING_STAGES
from tests.workspace import copy_project, REPO, stage_paths, write_mnist_npz

DVC_YAML = YAML(typ="safe", pure=True).load((REPO / "dvc.yaml").read_text())["stages"]
ORDER = ["sample", "split", "weights", "features", *TRAINING_STAGES, "evaluate", "summary", "visualize", "export",
         "submission", "mnist_data", "mnist"]


def evaluations():
    """evaluate@<model>'s paths, as dvc.yaml's foreach gives them."""
    foreach = DVC_YAML["evaluate"]["foreach"]
    return {name: [Path(f"models/{name}.keras"), Path(item["validation"]), Path(item["test"]),
                   Path(f"metrics/eval/{name}"), Path(f"models/{name}.calibration.json")]
            for name, item in foreach.items()}


def declared_outputs(stage):
    spec = DVC_YAML[stage]
    if "foreach" in spec:
        return [path for name in spec["foreach"] for path in (Path(f"metrics/eval/{name}"),
                                                               Path(f"models/{name}.calibration.json"))]
    return [Path(next(iter(entry)) if isinstance(entry, dict) else entry)
            for entry in spec.get("outs", []) + spec.get("metrics", [])]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """A project folder where every stage ran once, in order, as the current directory."""
    path = copy_project(tmp_path_factory.mktemp("stages") / "project")
    write_mnist_npz(path / "mnist_small.npz")
    before = Path.cwd()
    os.chdir(path)
    try:
        for name in ORDER:
            keras.backend.clear_session()
            stage = importlib.import_module(f"stages.{name}")
            runs = evaluations().values() if name == "evaluate" else [stage_paths(name)]
            for paths in runs:
                stage.main(*paths)
        yield path
    finally:
        os.chdir(before)


def test_every_stage_writes_its_declared_outputs(pipeline):
    for stage in ORDER:
        for output in declared_outputs(stage):
            assert (pipeline / output).exists(), f"{stage} did not write {output}"


def test_the_summary_names_every_model_of_the_catalog(pipeline):
    rows = [line for line in (pipeline / "metrics/summary.md").read_text().splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == [model.name for model in MODELS]
    assert set(json.loads((pipeline / "metrics/evaluate.json").read_text())) == {model.name for model in MODELS}
    assert {path.stem for path in (pipeline / "metrics/curves").glob("*.json")} == {model.stage for model in MODELS}


def test_stage_paths_agree_with_the_catalog():
    """dvc.yaml passes each training stage the model file the catalog names for it."""
    for model in MODELS:
        assert str(model.file) in DVC_YAML[model.stage]["cmd"].split(), model.name
        assert f"dvclive/{model.stage}" in DVC_YAML[model.stage]["cmd"].split(), model.name
