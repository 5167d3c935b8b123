"""The docs name only what exists: make targets, stages and params."""

import re

import pytest
from ruamel.yaml import YAML

from tests.workspace import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MAKE_TARGETS = set(re.findall(r"^([a-z][\w-]*):", (REPO / "Makefile").read_text(), re.M))
STAGES = set(YAML(typ="safe", pure=True).load((REPO / "dvc.yaml").read_text())["stages"])
PARAMS = YAML(typ="safe", pure=True).load((REPO / "params.yaml").read_text())
TRAINING_STAGES = {"scratch", "scratch_augmented", "train_head", "features_augmented", "finetune", "mnist"}


def mentions(pattern):
    return sorted({(doc.name, found) for doc in DOCS for found in re.findall(pattern, doc.read_text())})


def test_docs_exist_and_readme_links_every_page():
    readme = (REPO / "README.md").read_text()
    assert "make test" in readme and len(readme.splitlines()) < 120
    for page in (REPO / "docs").glob("*.md"):
        assert f"docs/{page.name}" in readme


@pytest.mark.parametrize("doc,target", mentions(r"\bmake ([a-z][\w-]*)"))
def test_make_targets_exist(doc, target):
    assert target in MAKE_TARGETS, f"{doc} mentions `make {target}`"


COMMANDS = {path.stem for path in (REPO / "stages").glob("*.py") if "if __name__ == \"__main__\"" in path.read_text()} - STAGES


def test_every_stage_is_a_module_and_predict_a_command():
    assert all((REPO / f"stages/{stage}.py").is_file() for stage in STAGES) and COMMANDS == {"predict"}


@pytest.mark.parametrize("doc,stage", mentions(r"python -m stages\.(\w+)") + mentions(r"dvc repro (?:-\w+ )*([a-z_]+)"))
def test_stages_exist(doc, stage):
    assert stage in STAGES or stage in COMMANDS, f"{doc} mentions stage {stage}"


def param_mentions():
    """`section.key` mentions whose section is a params section (not file or module names)."""
    found = mentions(r"`([a-z_]+\.[a-z_]+)(?:[=:` ])") + mentions(r"-S '?([a-z_]+\.[a-z_]+)=")
    return [(doc, key) for doc, key in found if key.split(".")[0] in PARAMS]


@pytest.mark.parametrize("doc,key", param_mentions())
def test_param_keys_exist(doc, key):
    section, name = key.split(".")
    assert name in PARAMS[section], f"{doc} mentions param {key}"


@pytest.mark.parametrize("doc,name", mentions(r"`<(?:training )?stage>\.([a-z_]+)`"))
def test_per_stage_params_exist(doc, name):
    assert any(name in PARAMS[stage] for stage in TRAINING_STAGES), f"{doc} mentions <stage>.{name}"
