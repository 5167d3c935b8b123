"""Named configurations (conf/, composed into params.yaml by DVC's Hydra integration): the
committed params.yaml is the quick one, every option of a group sets the same keys, and
each target gets exactly its configuration whatever ran before."""

import json
import shlex
import shutil
import subprocess

import pytest
from ruamel.yaml import YAML

from dogs_vs_cats.catalog import TRAINING_STAGES
from tests.helpers import kaggle_members, write_zip
from tests.workspace import compose, dvc, make_workspace, REPO, run, stages_run

YAML_SAFE = YAML(typ="safe", pure=True)


def group_options(group):
    return {path.stem: YAML_SAFE.load(path.read_text()) for path in sorted((REPO / "conf" / group).glob("*.yaml"))}


def keys(tree, prefix=""):
    """Every leaf key of a nested mapping, dotted."""
    found = set()
    for key, value in tree.items():
        found |= keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
    return found


def test_committed_params_are_the_quick_configuration_as_dvc_writes_it(tmp_path):
    composed = compose(tmp_path / "params.yaml")
    assert (REPO / "params.yaml").read_text() == composed.read_text(), \
        "params.yaml differs from conf/'s default composition: run `make baseline` (docs/experiments.md)"
    params = YAML_SAFE.load(composed.read_text())
    assert params["configuration"] == {"schedule": "quick", "levers": "none"}


@pytest.mark.parametrize("group", ["schedule", "levers"])
def test_every_option_of_a_group_sets_the_same_keys(group):
    # A levers option may also set a key every schedule sets (fast: the epochs of
    # features_augmented and fine-tuning, their cosine horizons): switching back to none resets it through the schedule.
    options = group_options(group)
    assert len(options) >= 2
    reset_by_schedules = set.intersection(*(keys(option) for option in group_options("schedule").values()))
    expected = keys(next(iter(options.values()))) - (reset_by_schedules if group == "levers" else set())
    for name, option in options.items():
        assert option["configuration"] == {group: name}  # what `dvc exp show` says was used
        shown = keys(option) - (reset_by_schedules if group == "levers" else set())
        assert shown == expected, name


@pytest.mark.parametrize("schedule", ["quick", "book", "full"])
@pytest.mark.parametrize("levers", ["none", "fast"])
def test_every_combination_composes_valid_params(tmp_path, schedule, levers):
    from dogs_vs_cats.config import load_params
    params = load_params(compose(tmp_path / "params.yaml", [f"schedule={schedule}", f"levers={levers}"]))
    assert (params.configuration.schedule, params.configuration.levers) == (schedule, levers)
    assert params.split.train == {"quick": 100, "book": 1000, "full": "all"}[schedule]
    assert params.finetune.start_from == ("head" if schedule == "full" else "features_augmented")
    # fast's cosine decay sets the horizons of features_augmented and fine-tuning, whatever the
    # schedule; conf/recipe/fast_full.yaml shortens fine-tuning's for every photo
    expected = {"quick": 2, "book": 100, "full": 10}[schedule] if levers == "none" else 30
    assert params.finetune.epochs == (3 if (schedule, levers) == ("full", "fast") else expected)
    assert params.features_augmented.epochs == ({"quick": 1, "book": 30, "full": 30}[schedule]
                                                if levers == "none" else 50)
    assert params.finetune.echo == 1 and params.scratch_augmented.early_stopping == {"none": 0, "fast": 15}[levers]
    assert params.features_augmented.views == params.finetune.views == 0
    assert params.finetune.lr_schedule == {"none": "constant", "fast": "cosine"}[levers]
    assert params.finetune.precision == {"none": "float32", "fast": "auto"}[levers]


def make_command(target, *variables):
    """The `dvc exp run` line `make <target> <variables>` runs, as arguments for dvc."""
    shown = subprocess.run(["make", "-n", target, *variables], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout
    line = next(line for line in shown.splitlines() if line.startswith("dvc exp run "))
    arguments = shlex.split(line)[1:]
    targets = {"full": ["evaluate@head", "evaluate@finetuned"]}.get(target, ["summary", "visualize", "export"])
    assert arguments[-len(targets):] == targets
    return arguments[:-len(targets)]


@pytest.mark.slow  # reads the Makefile's command through `make -n`
def test_make_seed_sets_every_seed_in_the_params(tmp_path):
    """`make book SEED=7` changes every `seed` the configurations have, and nothing else."""
    seeded = sorted(key for key in keys(YAML_SAFE.load((REPO / "conf/config.yaml").read_text()))
                    if key.endswith(".seed"))
    assert len(seeded) >= len(TRAINING_STAGES)
    arguments = make_command("book", "FAST=1", "SEED=7")
    overrides = [arguments[i + 1] for i, argument in enumerate(arguments) if argument == "-S"]
    assert sorted(o.split("=")[0] for o in overrides if o.endswith(".seed=7")) == seeded
    unseeded = []
    for argument in arguments:  # drop each seed override with its -S
        if argument.endswith(".seed=7"):
            unseeded.pop()
        else:
            unseeded.append(argument)
    assert make_command("book", "FAST=1") == unseeded


def split_counts(workspace):
    return {split: len(list((workspace / "data/split" / split / "cats").iterdir()))
            for split in ("train", "validation", "test")}


@pytest.mark.slow  # the split through `dvc exp run`, four times
def test_each_make_target_gets_exactly_its_configuration_whatever_ran_before(tmp_path):
    workspace = make_workspace(tmp_path / "ws")
    shutil.copytree(REPO / "conf", workspace / "conf")
    dvc(workspace, "config", "hydra.enabled", "true")
    write_zip(workspace / "train.zip", kaggle_members(2300))  # the real archive's layout, tiny pictures
    run(workspace, "git", "add", "-A")
    run(workspace, "git", "commit", "-qm", "configurations")

    def params():
        return YAML_SAFE.load((workspace / "params.yaml").read_text())

    # Each target's own `dvc exp run` line, run up to the split (the models are not the point).
    dvc(workspace, *make_command("run"), "split")
    assert (workspace / "params.yaml").read_text() == (REPO / "params.yaml").read_text()
    assert split_counts(workspace) == {"train": 100, "validation": 50, "test": 50}

    dvc(workspace, *make_command("book", "DATA=train.zip"), "split")
    book = params()
    assert split_counts(workspace) == {"train": 1000, "validation": 500, "test": 500}
    assert [book[stage]["epochs"] for stage in TRAINING_STAGES] == [30, 100, 30, 30, 100]
    assert book["configuration"] == {"schedule": "book", "levers": "none"} and book["data"]["archive"] == "train.zip"
    assert book["finetune"]["precision"] == "float32" and book["finetune"]["echo"] == 1

    fast = dvc(workspace, *make_command("book", "FAST=1", "DATA=train.zip"), "split")
    assert "split" not in stages_run(fast.stdout)  # the same split: nothing to redo
    assert params()["configuration"] == {"schedule": "book", "levers": "fast"}
    assert params()["finetune"]["precision"] == "auto" and params()["finetune"]["lr_schedule"] == "cosine"
    assert {key: value for key, value in params().items() if key not in ("configuration", *TRAINING_STAGES,
                                                                          "features")} == \
        {key: value for key, value in book.items() if key not in ("configuration", *TRAINING_STAGES, "features")}

    full = dvc(workspace, *make_command("full", "FAST=1", "DATA=train.zip"), "split")
    assert "split" in stages_run(full.stdout)
    assert split_counts(workspace) == {"train": 1300, "validation": 500, "test": 500}  # every other photo
    assert params()["configuration"] == {"schedule": "full", "levers": "fast"}
    assert params()["finetune"]["start_from"] == "head" and params()["finetune"]["epochs"] == 3

    dvc(workspace, "exp", "run", "-S", "train_head.lr=5e-5", "-S", "split.train=90", "split")  # an experiment
    assert split_counts(workspace)["train"] == 90
    dvc(workspace, *make_command("run"), "split")
    assert (workspace / "params.yaml").read_text() == (REPO / "params.yaml").read_text()  # nothing stayed
    assert split_counts(workspace) == {"train": 100, "validation": 50, "test": 50}

    shown = json.loads(dvc(workspace, "exp", "show", "--json").stdout)
    used = [exp["data"]["params"]["params.yaml"]["data"]["configuration"]
            for rev in shown for branch in (rev.get("experiments") or []) for exp in branch["revs"]]
    assert {(c["schedule"], c["levers"]) for c in used} == {("quick", "none"), ("book", "none"), ("book", "fast"),
                                                             ("full", "fast")}
