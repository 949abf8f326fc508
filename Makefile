# nlpkit developer commands. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TEST_WORKERS ?= auto

.DEFAULT_GOAL := help
.PHONY: help install train test test-fast lint format bench bench-serve native clean

help: ## list the commands
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install nlpkit (editable, dev extras); idempotent

train: $(STAMP) ## train the default BiLSTM document classifier on the built-in dataset
	$(PY) -m nlpkit.train task=doc_cls model=bilstm

test: $(STAMP) ## run the whole test suite (one pytest worker per core, a file per worker at a time)
	# Tiny test models gain nothing from intra-op threads: one thread per process, one process per core.
	# --dist loadfile keeps a file's tests (and its session fixtures: trained runs, exports) on one worker.
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15

lint: $(STAMP) ## ruff lint and format check
	$(VENV)/bin/ruff check nlpkit tests scripts
	$(VENV)/bin/ruff format --check nlpkit tests scripts

format: $(STAMP) ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix nlpkit tests scripts
	$(VENV)/bin/ruff format nlpkit tests scripts

native: $(STAMP) ## build the C++ RNNG parser native/build/nlpkit-rnng (CMake, g++, the torch wheel's libtorch)
	$(PY) -m nlpkit.tasks.semantic_parse.native build

bench: $(STAMP) ## training-loop overhead benchmark (nlpkit vs a hand-written loop)
	$(PY) scripts/bench_train_overhead.py

bench-serve: $(STAMP) ## HTTP serving load test: RUN=outputs/runs/DIR (exported) vs the eager baseline
	$(PY) scripts/bench_serving.py --run-dir $(RUN)

clean: ## remove run outputs and caches (keeps .venv)
	rm -rf outputs multirun .cache .pytest_cache
