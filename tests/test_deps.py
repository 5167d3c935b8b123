"""dvc.yaml lists, for every stage, its entry point and exactly the library modules it
imports (transitively, through the library's own imports)."""

import ast
import copy
import re

from ruamel.yaml import YAML

from tests.workspace import REPO

DVC_YAML = YAML(typ="safe", pure=True).load((REPO / "dvc.yaml").read_text())
CODE = ("stages/", "dogs_vs_cats/")
# The params schema only accepts or refuses params.yaml and hands its values over as they
# are (it has no defaults), so it cannot change an output; as a dep it would re-run every
# stage whenever a param is added. What only it imports is not followed either. The `check`
# stage is the exception: checking params.yaml is all it does.
NOT_DEPS = {"dogs_vs_cats/config.py"}
CHECKS_PARAMS = {"check"}


def imported_modules(path, seen=None, skip=NOT_DEPS):
    """`path` and every project module (stages/*.py, dogs_vs_cats/*.py) it imports, directly
    or through another, anywhere in the code (inside functions too)."""
    seen = set() if seen is None else seen
    if path in seen or path in skip:
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
            if candidate.startswith(CODE) and (REPO / candidate).is_file():
                imported_modules(candidate, seen, skip)
    return seen


def dep_problems(dvc_yaml):
    """One line per stage whose code deps differ from what its entry point imports."""
    problems = []
    for stage, spec in dvc_yaml["stages"].items():
        spec = spec.get("do", spec)  # foreach stages keep their body under `do`
        module = re.match(r"python -m stages\.(\w+)", spec["cmd"]).group(1)
        listed = {dep for dep in spec.get("deps", []) if dep.startswith(CODE)}
        needed = imported_modules(f"stages/{module}.py", skip=set() if module in CHECKS_PARAMS else NOT_DEPS)
        if needed - listed:
            problems.append(f"{stage}: missing deps {sorted(needed - listed)}")
        if listed - needed:
            problems.append(f"{stage}: lists {sorted(listed - needed)}, which it never imports")
    return problems


def test_every_stage_lists_exactly_the_modules_it_imports():
    assert dep_problems(DVC_YAML) == []


def test_a_removed_or_stray_dep_is_caught():
    broken = copy.deepcopy(DVC_YAML)
    broken["stages"]["train_head"]["deps"].remove("dogs_vs_cats/images.py")  # imported through training.py
    broken["stages"]["evaluate"]["do"]["deps"].append("dogs_vs_cats/split.py")
    assert dep_problems(broken) == ["train_head: missing deps ['dogs_vs_cats/images.py']",
                                    "evaluate: lists ['dogs_vs_cats/split.py'], which it never imports"]


def test_imports_inside_functions_count():
    assert "dogs_vs_cats/images.py" in imported_modules("dogs_vs_cats/export.py")  # imported inside export()


def test_stages_import_only_the_library():
    for path in sorted((REPO / "stages").glob("*.py")):
        stages = {module for module in imported_modules(f"stages/{path.name}") if module.startswith("stages/")}
        assert stages == {f"stages/{path.name}"}, path.name
