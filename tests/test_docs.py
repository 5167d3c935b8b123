"""The docs name only what exists: make targets, stages and params."""

import re

import pytest
from ruamel.yaml import YAML

from dogs_vs_cats.catalog import TRAINING_STAGES
from tests.workspace import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MAKE_TARGETS = set(re.findall(r"^([a-z][\w-]*):", (REPO / "Makefile").read_text(), re.M))
STAGES = set(YAML(typ="safe", pure=True).load((REPO / "dvc.yaml").read_text())["stages"])
PARAMS = YAML(typ="safe", pure=True).load((REPO / "params.yaml").read_text())
COMMANDS = {path.stem for path in (REPO / "stages").glob("*.py")
            if "if __name__ == \"__main__\"" in path.read_text()} - STAGES


def test_docs_exist_and_readme_links_every_page():
    readme = (REPO / "README.md").read_text()
    assert "make test" in readme and len(readme.splitlines()) < 120
    for page in (REPO / "docs").glob("*.md"):
        assert f"docs/{page.name}" in readme


def test_readme_is_two_screens_and_no_page_is_over_250_lines():
    assert len((REPO / "README.md").read_bytes()) < 6000
    assert {doc.name: lines for doc in DOCS if (lines := len(doc.read_text().splitlines())) > 250} == {}


def anchors(path):
    """The anchors GitHub gives the headings of a markdown file."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)  # no headings in fenced code
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.*)$", text, re.M)}


def broken_links(doc):
    """The relative links of `doc` to a file that does not exist or a heading it lacks."""
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (doc.parent / path) if path else doc
        if not linked.exists() or anchor and anchor not in anchors(linked):
            broken.append(target)
    return broken


@pytest.mark.parametrize("doc", [*DOCS, REPO / "CHANGELOG.md"], ids=lambda doc: doc.name)
def test_links_lead_to_files_and_headings_that_exist(doc):
    assert broken_links(doc) == []


def test_a_broken_link_is_caught(tmp_path):
    (tmp_path / "page.md").write_text("# A page\n\n## Its part: `one`, two\n")
    doc = tmp_path / "doc.md"
    doc.write_text("[a](page.md) [b](page.md#its-part-one-two) [c](page.md#its-part) [d](gone.md) [e](#here)\n"
                   "[f](https://example.com)\n```\n# here\n```\n")
    assert broken_links(doc) == ["page.md#its-part", "gone.md", "#here"]


def test_every_stage_is_a_module_and_predict_a_command():
    assert all((REPO / f"stages/{stage}.py").is_file() for stage in STAGES) and COMMANDS == {"predict"}


def missing_mentions(text):
    """What `text` names that does not exist: make targets, stages (and commands), params
    (`section.key`, `-S section.key=`) and per-stage params (`<stage>.key`)."""
    missing = [f"make {target}" for target in re.findall(r"\bmake ([a-z][\w-]*)", text)
               if target not in MAKE_TARGETS]
    stages = re.findall(r"python -m stages\.(\w+)", text) + re.findall(r"dvc repro (?:-\w+ )*([a-z_]+)", text)
    missing += [f"stage {stage}" for stage in stages if stage not in STAGES | COMMANDS]
    keys = re.findall(r"`([a-z_]+\.[a-z_]+)(?:[=:` ])", text) + re.findall(r"-S '?([a-z_]+\.[a-z_]+)=", text)
    missing += [f"param {key}" for key in keys
                if key.split(".")[0] in PARAMS and key.split(".")[1] not in PARAMS[key.split(".")[0]]]
    missing += [f"param <stage>.{name}" for name in re.findall(r"`<(?:training )?stage>\.([a-z_]+)`", text)
                if not any(name in PARAMS[stage] for stage in (*TRAINING_STAGES, "mnist"))]
    return sorted(set(missing))


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.name)
def test_doc_names_only_what_exists(doc):
    assert missing_mentions(doc.read_text()) == []


def test_a_wrong_mention_is_caught():
    text = "`make tests`, `python -m stages.trian`, `dvc repro -f splitt`, `train_head.rate: 1`, `<stage>.speed`"
    assert missing_mentions(text) == ["make tests", "param <stage>.speed", "param train_head.rate", "stage splitt",
                                      "stage trian"]
