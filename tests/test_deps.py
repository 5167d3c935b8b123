"""dvc.yaml lists, for every stage, exactly the project modules its code imports (transitively)."""

import ast
import copy
import re

from ruamel.yaml import YAML

from tests.conftest import REPO

DVC_YAML = YAML(typ="safe", pure=True).load((REPO / "dvc.yaml").read_text())
# The params schema only accepts or refuses params.yaml (it has no defaults), so it cannot
# change an output; as a dep it would re-run every stage whenever a param is added.
NOT_DEPS = {"stages/schema.py"}


def imported_modules(path, seen=None):
    """`path` and every stages/*.py it imports, directly or through another, anywhere in the code."""
    seen = set() if seen is None else seen
    if path in seen:
        return seen
    seen.add(path)
    for node in ast.walk(ast.parse((REPO / path).read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            candidate = name.replace(".", "/") + ".py"
            if name.startswith("stages.") and (REPO / candidate).is_file():
                imported_modules(candidate, seen)
    return seen


def dep_problems(dvc_yaml):
    """One line per stage whose code deps differ from what its module imports."""
    problems = []
    for stage, spec in dvc_yaml["stages"].items():
        spec = spec.get("do", spec)  # foreach stages keep their body under `do`
        module = re.match(r"python -m stages\.(\w+)", spec["cmd"]).group(1)
        listed = {dep for dep in spec.get("deps", []) if dep.startswith("stages/")}
        needed = imported_modules(f"stages/{module}.py") - NOT_DEPS
        if needed - listed:
            problems.append(f"{stage}: missing deps {sorted(needed - listed)}")
        if listed - needed:
            problems.append(f"{stage}: lists {sorted(listed - needed)}, which it never imports")
    return problems


def test_every_stage_lists_exactly_the_modules_it_imports():
    assert dep_problems(DVC_YAML) == []


def test_a_removed_or_stray_dep_is_caught():
    broken = copy.deepcopy(DVC_YAML)
    broken["stages"]["train_head"]["deps"].remove("stages/images.py")  # imported through stages/training.py
    broken["stages"]["evaluate"]["do"]["deps"].append("stages/split.py")
    assert dep_problems(broken) == ["train_head: missing deps ['stages/images.py']",
                                    "evaluate: lists ['stages/split.py'], which it never imports"]


def test_imports_inside_functions_count():
    assert "stages/images.py" in imported_modules("stages/export.py")  # imported inside export()
