"""params.yaml is read as DVC reads it and checked against one schema; `--help` only helps."""

import os
import subprocess
import sys
import typing

import pytest
from ruamel.yaml import YAML

from dogs_vs_cats.config import load_params, Params
from dogs_vs_cats.errors import StageError
from tests.workspace import REPO, update_params


@pytest.fixture
def params_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text())
    return path


def test_committed_params_are_valid():
    params = load_params(REPO / "params.yaml")
    assert params.finetune.lr == 1e-5 and isinstance(params.finetune.lr, float)


@pytest.mark.parametrize("text", ["5e-05", "1e-05", "0.00002", "5e-5", "2.0e-5"])
def test_floats_in_every_notation_dvc_writes_are_numbers(params_file, text):
    content = params_file.read_text()
    assert "train_head:\n  epochs: 10\n  batch_size: 20\n  lr: 2.0e-05\n" in content
    params_file.write_text(content.replace("  lr: 2.0e-05\n", f"  lr: {text}\n", 1))  # train_head's, the first
    params = load_params(params_file)
    assert isinstance(params.train_head.lr, float) and params.train_head.lr == float(text)


def allows_float(annotation):
    return annotation is float or any(allows_float(arg) for arg in typing.get_args(annotation))


FLOAT_KEYS = [f"{name}.{key}" for name, section in Params.model_fields.items()
              for key, field in section.annotation.model_fields.items() if allows_float(field.annotation)]


def test_the_schema_has_float_keys_to_check():
    assert {"train_head.lr", "finetune.frozen_lr", "augment.rotation", "submission.clip"} <= set(FLOAT_KEYS)


@pytest.mark.parametrize("text", [".inf", "-.inf", ".nan", "1e400"])
def test_every_float_key_refuses_what_is_not_finite(params_file, text):
    """YAML reads `1e400` as infinity: an infinite learning rate trains a model of NaN weights."""
    yaml = YAML(typ="safe", pure=True)
    for dotted in FLOAT_KEYS:
        name, key = dotted.split(".")
        params = yaml.load((REPO / "params.yaml").read_text())
        params[name][key] = "NOT_FINITE"
        with open(params_file, "w") as f:
            yaml.dump(params, f)
        params_file.write_text(params_file.read_text().replace("NOT_FINITE", text))
        with pytest.raises(StageError) as error:
            load_params(params_file)
        assert "\n" not in str(error.value) and f"{dotted}: should be a finite number" in str(error.value), dotted


def test_every_bad_key_is_named_in_one_line(params_file):
    update_params(params_file, {"scratch": {"epochs": "ten"}, "train_head": {"lr": "fast", "batch_size": 0},
                                "scratch_augmented": {"dropout": 1.5}, "split": {"train": True, "test": 0},
                                "curves": {"smoothing": "abc"}, "visualize": {"gradcam_images": 0},
                                "image": {"size": 10000}, "finetune": {"epochs": 1.5, "cache": "yes"}})
    with pytest.raises(StageError) as error:
        load_params(params_file)
    message = str(error.value)
    assert "\n" not in message
    for expected in ("scratch.epochs: should be a valid integer (got 'ten')",
                     "train_head.lr: should be a valid number (got 'fast')",
                     "train_head.batch_size: should be greater than or equal to 1 (got 0)",
                     "scratch_augmented.dropout: should be less than 1 (got 1.5)",
                     "split.train: should be a valid integer (got True)",
                     "split.test: should be greater than or equal to 1 (got 0)",
                     "curves.smoothing: should be a valid number (got 'abc')",
                     "visualize.gradcam_images: should be greater than or equal to 1",
                     "image.size: should be less than or equal to 512 (got 10000)",
                     "finetune.epochs: should be a valid integer (got 1.5)",
                     "finetune.cache: should be 'auto', True or False (got 'yes')"):
        assert expected in message


def test_missing_and_unknown_keys(params_file):
    text = params_file.read_text().replace("train_head:", "train_heads:")
    params_file.write_text(text)
    with pytest.raises(StageError, match=r"train_head: missing; .*train_heads: not a known key"):
        load_params(params_file)


@pytest.mark.parametrize("stage", ["weights", "finetune"])
def test_help_says_what_the_stage_reads_and_writes_and_does_nothing(tmp_path, stage):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-m", f"stages.{stage}", "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"usage: python -m stages.{stage}" in result.stdout
    for title in ("reads (dvc.yaml deps):", "writes (outs):", "params (params.yaml):", f"stages/{stage}.py"):
        assert title in result.stdout
    assert list(tmp_path.iterdir()) == []  # no params.yaml here: had it run, it would have failed
    wrong = subprocess.run([sys.executable, "-m", f"stages.{stage}", "--fast"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
    assert wrong.returncode == 2 and "takes no arguments" in wrong.stderr and "Traceback" not in wrong.stderr


@pytest.mark.parametrize("seed,expected", [(-1, "greater than or equal to 0"),
                                           (99999999999999, "less than or equal to 4294967295")])
def test_seeds_outside_what_numpy_takes_are_named(params_file, seed, expected):
    update_params(params_file, {"train_head": {"seed": seed}, "sample": {"seed": seed}})
    with pytest.raises(StageError, match=f"train_head.seed: should be {expected}.*sample.seed|sample.seed.*train_head"):
        load_params(params_file)


def test_broken_yaml_says_what_and_where(params_file):
    text = params_file.read_text()
    duplicate_line = len(text.splitlines()) + 1
    params_file.write_text(text + "train_head:\n  lr: 0.1\n")
    with pytest.raises(StageError) as error:
        load_params(params_file)
    assert f'not valid YAML (line {duplicate_line}, column 1: found duplicate key "train_head")' in str(error.value)
    params_file.write_text("data:\n  archive: [a.zip\nsplit: 3\n")
    with pytest.raises(StageError, match=r"not valid YAML \(line 3, column 6: expected ',' or '\]'"):
        load_params(params_file)
