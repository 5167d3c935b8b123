"""The baseline main carries (`make baseline`): the committed dvc.lock still records the
code, params and commands of its stages, as a fresh clone sees them."""

import json
import shutil
import subprocess

import pytest
from ruamel.yaml import YAML

from tests.workspace import dvc, REPO, run

YAML_SAFE = YAML(typ="safe", pure=True)


def lock_problems(root, workdir):
    """What the dvc.lock in `root` records that its code, params or commands no longer
    match, as a fresh clone of `root` sees it (the files git tracks or would add, copied
    into `workdir`): one line per stage. Outputs and data a clone lacks are ignored."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        if (root / name).is_file():
            (workdir / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, workdir / name)
    run(workdir, "git", "init", "-q")
    recorded = YAML_SAFE.load((workdir / "dvc.lock").read_text())["stages"]
    # What stages write is data a clone lacks (or holds only a .gitignore of): not code.
    outputs = {out["path"] for entry in recorded.values() for out in entry.get("outs", [])}

    def produced(path):
        return path in outputs or any(out.startswith(path.rstrip("/") + "/") for out in outputs)

    status = json.loads(dvc(workdir, "status", "--json").stdout or "{}")
    problems = []
    for stage, changes in status.items():
        if stage not in recorded:  # a stage the baseline does not run (mnist, submission)
            continue
        found = []
        for change in changes:
            if change == "changed command":
                found.append("its command")
            elif isinstance(change, dict):
                for paths in change.values():
                    for path, state in paths.items():
                        if isinstance(state, dict):  # params.yaml: {key: modified | new | deleted}
                            found += [f"param {key} {what}" for key, what in state.items()]
                        elif state not in ("deleted", "not in cache") and not produced(path):
                            found.append(f"{path} {state}")
        if found:
            problems.append(f"{stage}: {', '.join(found)}")
    return problems


@pytest.mark.slow  # asks `dvc status`
def test_committed_lock_records_the_current_code_and_params(tmp_path):
    assert (REPO / "dvc.lock").is_file(), "main carries no baseline: run `make baseline` and commit it"
    problems = lock_problems(REPO, tmp_path)
    assert problems == [], "dvc.lock is stale, run `make baseline` and commit it:\n" + "\n".join(problems)


@pytest.mark.slow  # asks `dvc status`
def test_a_stale_lock_is_caught(first_run, tmp_path):
    # A clone of the session's committed DAG run: what git holds (dvc.lock, code, params).
    run(tmp_path, "git", "clone", "-q", str(first_run[0]), "ws")
    workspace = tmp_path / "ws"
    (tmp_path / "fresh").mkdir()
    assert lock_problems(workspace, tmp_path / "fresh") == []  # no data, no outputs: nothing to report
    split_code = workspace / "dogs_vs_cats/split.py"
    split_code.write_text(split_code.read_text() + "\n# changed\n")
    params = workspace / "params.yaml"
    params.write_text(params.read_text().replace("order: book", "order: random"))
    (tmp_path / "changed").mkdir()
    assert lock_problems(workspace, tmp_path / "changed") == [
        "check: param split modified", "split: dogs_vs_cats/split.py modified, param split modified"]


def markdown_table(lines, header_start):
    """{model: {column: cell}} of the markdown table whose header line starts with `header_start`."""
    lines = [line.strip() for line in lines]
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    columns = [cell.strip() for cell in lines[start].strip("|").split("|")]
    table = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        table[cells[0].strip("`")] = dict(zip(columns, cells))
    return table


def test_the_readmes_baseline_table_is_the_committed_summarys():
    """The README quotes main's baseline (`make baseline`): its figures are the committed
    metrics/summary.md's and metrics/evaluate.json's. After a new baseline, copy the rows."""
    readme = markdown_table((REPO / "README.md").read_text().splitlines(), "| model | epochs run")
    summary = markdown_table((REPO / "metrics/summary.md").read_text().splitlines(), "| model |")
    evaluated = json.loads((REPO / "metrics/evaluate.json").read_text())
    assert list(readme) == list(summary)
    stale = []
    for model, row in readme.items():
        for column, cell in row.items():
            if column != "model" and cell != summary[model][column]:
                stale.append(f"{model} {column}: README {cell}, metrics/summary.md {summary[model][column]}")
        accuracy = evaluated[model]["accuracy"]
        if row["test accuracy"] != f"{100 * accuracy:.1f}%":
            stale.append(f"{model}: README {row['test accuracy']}, metrics/evaluate.json {accuracy}")
    assert stale == [], ("README.md's baseline table is not main's baseline; copy metrics/summary.md's rows:\n"
                         + "\n".join(stale))
