# Quickstart: `make run` (the pipeline on the embedded sample) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(abspath $(VENV))/bin
# Stage commands say `python`: make it the project's environment, for DVC too.
export PATH := $(BIN):$(PATH)

# What `make run` changes from params.yaml so the sample runs through in minutes on a
# laptop CPU: fewer images, fewer epochs. Everything else is the book's configuration.
QUICK := -S sample.per_class=400 -S split.train=200 -S split.validation=100 -S split.test=100 \
         -S scratch.epochs=5 -S scratch_augmented.epochs=5 -S train_head.epochs=10 \
         -S features_augmented.epochs=1 -S finetune.epochs=2
# `make run WEIGHTS=path/to/vgg16_notop.weights.h5` uses a local ImageNet file instead
# of Keras' download; it reaches the stages as the DVC param base.weights.
WEIGHTS ?=
RUN_OVERRIDES := $(QUICK) $(if $(WEIGHTS),-S 'base.weights=$(WEIGHTS)')
# `make mnist MNIST=path/to/mnist.npz` uses a local copy instead of Keras' download.
MNIST ?=

.PHONY: venv lock run book mnist submission report test test-fast lint bench clean-venv

# The environment comes from lock files (every package pinned, with hashes): what `make
# run` needs from requirements/run.lock; `make test` adds requirements/test.lock's extras.
# After changing pyproject.toml's dependencies: `make lock`, and commit requirements/.
$(VENV)/.installed: requirements/run.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements/run.lock
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

run: $(VENV)/.installed
	dvc exp run $(RUN_OVERRIDES) $(DOGS_VS_CATS)
	dvc metrics show
	cat metrics/summary.md

mnist: $(VENV)/.installed
	dvc exp run $(if $(MNIST),-S mnist.npz=$(MNIST)) mnist
	cat metrics/mnist.json

# The book's schedule: every model at the book's epochs, from params.yaml as committed.
# FAST=1 adds the CPU levers of docs/book-schedule.md: bfloat16 arithmetic (CPUs with
# AVX512_BF16 or AMX), data echoing in the two stages with a frozen VGG16 part, and early
# stopping. DATA and WEIGHTS point it at a real train.zip and a local ImageNet file, e.g.
#   make book FAST=1 DATA=path/to/train.zip WEIGHTS=path/to/vgg16_notop.weights.h5
# Overrides are written into params.yaml, as `dvc exp run -S` does.
# The training stages come from the catalog (dogs_vs_cats/catalog.py), read when a target needs them.
TRAINING_STAGES = $(shell $(BIN)/python -c 'from dogs_vs_cats.catalog import TRAINING_STAGES; print(*TRAINING_STAGES)')
FAST_LEVERS = -S features.precision=bfloat16 $(foreach stage,$(TRAINING_STAGES),-S $(stage).precision=bfloat16) \
               -S scratch.early_stopping=5 -S scratch_augmented.early_stopping=15 \
               -S features_augmented.early_stopping=10 -S finetune.early_stopping=10 \
               -S features_augmented.echo=3 -S finetune.echo=4
DATA ?=
BOOK_OVERRIDES = $(if $(FAST),$(FAST_LEVERS)) $(if $(DATA),-S 'data.archive=$(DATA)') \
                  $(if $(WEIGHTS),-S 'base.weights=$(WEIGHTS)')

book: $(VENV)/.installed
	dvc exp run $(BOOK_OVERRIDES) $(DOGS_VS_CATS)
	dvc metrics show
	cat metrics/summary.md

# Kaggle's submission CSV from the model of the last `make run` or `make book` (its params
# stay in params.yaml); SUBMISSION points it at the competition's dogs-vs-cats.zip or test1.zip.
SUBMISSION ?=
submission: $(VENV)/.installed
	dvc exp run $(if $(SUBMISSION),-S 'submission.archive=$(SUBMISSION)') submission
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
	python bench/features.py $(BENCH_ARGS)

clean-venv:
	rm -rf $(VENV)
