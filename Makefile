# Quickstart: `make run` (the pipeline on the embedded sample) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(abspath $(VENV))/bin
# Stage commands say `python`: make it the project's environment, for DVC too.
export PATH := $(BIN):$(PATH)

# Named configurations (conf/): DVC composes params.yaml from them afresh on every `dvc exp
# run`, so each target gets exactly its configuration, whatever ran before. FAST=1 adds the
# CPU levers (conf/levers/fast.yaml); DATA and WEIGHTS point a run at a real train.zip and a
# local ImageNet file, passed as the params data.archive and base.weights; SEED sets every
# stage's seed (the book's split takes images by number whatever the seed), e.g.
#   make book FAST=1 SEED=7 DATA=path/to/train.zip WEIGHTS=path/to/vgg16_notop.weights.h5
FAST ?=
DATA ?=
WEIGHTS ?=
SEED ?=
# Every section of conf/config.yaml with a `seed` key.
SEEDED := $(shell awk '/^[a-z_]+:/ {section = $$1} /^  seed:/ {sub(":", "", section); print section}' conf/config.yaml)
# `-S key=value` with any value: quoted for the override parser (Hydra's, also under
# --no-hydra), which then takes ',', '=', spaces, non-ASCII letters and `null` as they are,
# its own quotes escaped; then quoted for the shell.
Q := '
override = -S $(Q)$(subst $(Q),$(Q)\$(Q)$(Q),$(1)=$(Q)$(subst $(Q),\$(Q),$(2))$(Q))$(Q)
CONFIGURATION = -S levers=$(if $(FAST),fast,none) $(if $(DATA),$(call override,data.archive,$(DATA))) \
                $(if $(WEIGHTS),$(call override,base.weights,$(WEIGHTS))) \
                $(if $(SEED),$(foreach section,$(SEEDED),-S $(section).seed=$(SEED)))
# `make mnist MNIST=path/to/mnist.npz` uses a local copy instead of Keras' download.
MNIST ?=

.PHONY: venv lock run book full baseline mnist submission report test test-fast lint bench clean-venv

# The environment comes from lock files (every package pinned, with hashes): what `make
# run` needs from requirements/run.lock; `make test` adds requirements/test.lock's extras.
# After changing pyproject.toml's dependencies: `make lock`, and commit requirements/.
# pip compiles the 11,000 modules it installs to bytecode one by one; compileall does it on
# every core (every stage imports thousands of them: they must be compiled once, here).
$(VENV)/.installed: requirements/run.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps --no-compile -r requirements/run.lock
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed requirements/test.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements/test.lock
	touch $@

venv: $(VENV)/.installed

UV := $(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes --no-header --quiet
lock: $(VENV)/.installed
	$(BIN)/pip install --quiet --disable-pip-version-check uv==0.13.9
	$(UV) -o requirements/run.lock
	$(UV) --extra test -c requirements/run.lock -o requirements/test.lock
	$(UV) --extra test --extra bench -c requirements/test.lock -o requirements/bench.lock

# The Dogs vs. Cats chain and its pictures (MNIST is its own chain: `make mnist`).
DOGS_VS_CATS := summary visualize export

# The last screen of a run: metrics/summary.md's ladder, the columns that fit a terminal.
LADDER = sed -n '/^| model/,/^$$/p' metrics/summary.md | cut -d'|' -f1,2,4,5,6,8 | sed 's/ *$$/ |/'; \
         echo "metrics/summary.md has every column; \`dvc metrics diff main\` compares with main's baseline"

# `make run`: the quick schedule (conf/schedule/quick.yaml), the embedded sample in minutes.
run: $(VENV)/.installed
	dvc exp run -S schedule=quick $(CONFIGURATION) $(DOGS_VS_CATS)
	@$(LADDER)

mnist: $(VENV)/.installed
	dvc exp run --no-hydra $(if $(MNIST),$(call override,mnist.npz,$(MNIST))) mnist
	cat metrics/mnist.json

# The book's schedule (conf/schedule/book.yaml): the 1000/500/500 split, every model at the
# book's epochs; hours on a CPU (docs/book-schedule.md), fewer with FAST=1.
book: $(VENV)/.installed
	dvc exp run -S schedule=book $(CONFIGURATION) $(DOGS_VS_CATS)
	@$(LADDER)

# Every labelled photo of DATA (conf/schedule/full.yaml): the book's validation and test
# photos, every other one to train on; the main chain only (docs/full-data.md). Then
# `make submission SUBMISSION=path/to/dogs-vs-cats.zip` for Kaggle's 12,500 test photos.
full: $(VENV)/.installed
	dvc exp run -S schedule=full $(CONFIGURATION) evaluate@head evaluate@finetuned
	@python -c 'import json; [print(m, {k: json.load(open(f"metrics/eval/{m}/metrics.json"))[k] for k in ("accuracy", "loss")}) for m in ("head", "finetuned")]'

# The baseline main carries: the committed params.yaml (the quick configuration) run through,
# its dvc.lock and metrics. Run it last, after every code change, then commit what it lists.
baseline: $(VENV)/.installed
	dvc exp run -S schedule=quick -S levers=none $(DOGS_VS_CATS)
	@echo "commit it: git add params.yaml dvc.lock metrics dvclive models/*.calibration.json && git commit -m 'Baseline: the quick configuration'"

# Kaggle's submission CSV from the model of the last `make run` or `make book`: --no-hydra keeps
# that run's params.yaml instead of composing the default one, so nothing is trained again.
# SUBMISSION points it at the competition's dogs-vs-cats.zip or test1.zip.
SUBMISSION ?=
submission: $(VENV)/.installed
	dvc exp run --no-hydra $(if $(SUBMISSION),$(call override,submission.archive,$(SUBMISSION))) submission
	head -3 submissions/submission.csv

# Every `dvc plots` plot in one self-contained HTML file, the ladder first (`dvc plots show
# --html-template`); prints its path last.
report: $(VENV)/.installed
	python -m report.build dvc_plots/report.html

# The whole suite: every stage through DVC in throwaway workspaces (what CI runs).
test: $(VENV)/.test-installed
	pytest $(PYTEST_ARGS)

# Every stage's logic on tiny inputs, without the tests that run the DAG through DVC
# (marked `slow`): a few minutes on 2 cores.
test-fast: $(VENV)/.test-installed
	pytest -m "not slow" $(PYTEST_ARGS)

lint: $(VENV)/.test-installed
	ruff check .

# Feature extraction speed against the book's Keras 2 code (docs/performance.md);
# e.g. make bench BENCH_ARGS="--images 1000 --rounds 2".
$(VENV)/.bench: $(VENV)/.test-installed requirements/bench.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements/bench.lock
	touch $@

bench: $(VENV)/.bench
	python -m bench.features $(BENCH_ARGS)

clean-venv:
	rm -rf $(VENV)
