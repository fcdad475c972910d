# One-command set-up: every target below first makes sure .venv matches requirements.lock.
#   make repro   set up, then run the DVC pipeline (prepare -> classifier/train -> sample -> evaluate)
#   make setup   only the set-up (PYTHON=python3.12 picks the interpreter; default: newest of 3.13-3.11)
#   make test    set up, then the test suite on TEST_JOBS=2 processes (`make test PYTEST_ARGS="-k data"` for a part)
#   make study STUDY=regularisers   a named study (src/wae/studies.py): queue, run, report (docs/studies.md)
#   make study-report STUDY=...     only its report, from MLflow
#   make ui      open the MLflow UI on http://127.0.0.1:5000 (runs of this repo's store; prints their page)
#   make lint    ruff check + format check
#   make lock    re-resolve requirements.in into requirements.lock (needs network)
#   make check-lock  the lock resolves, from wheels, for Linux x86-64 and macOS arm64 on Python 3.11-3.13
SHELL := /bin/bash
# The interpreter: PYTHON=python3.12 (a name or a path), else the newest of 3.13, 3.12, 3.11 found on
# PATH or in pyenv. scripts/find-python says what to install when there is none; nothing is downloaded.
PYTHON ?=
VENV ?= .venv
BIN := $(VENV)/bin
# TF=gpu installs the CUDA build of TensorFlow (tensorflow[and-cuda]) instead of tensorflow-cpu.
TF ?= cpu
STAMP := $(VENV)/.installed-$(TF)
PYTEST_ARGS ?=
# make test: how many processes share the tests (pytest-xdist; 0 runs them in this one). Each test module
# stays in one process, so its fixtures are built once. Two keeps a 2-core machine busy: most tests wait
# on subprocesses (dvc, mlflow, a browser) much of the time.
TEST_JOBS ?= 2
# make study: which study, and how many of its experiments run at a time (dvc queue start -j).
# One training already keeps both cores of a 2-core laptop busy most of the time (docs/studies.md).
STUDY ?=
JOBS ?= 1
# A study of your own: STUDY=mine STUDY_ARGS="--vary train.lr=0.001,0.002 --seeds 0,1"
STUDY_ARGS ?=
# DVC stages run `python stages/...`: make that the virtualenv's python.
export PATH := $(abspath $(BIN)):$(PATH)
# Python writes its bytecode cache (__pycache__) as it does by default, also where PYTHONDONTWRITEBYTECODE
# is set (many Docker images and CI machines): without it every stage, `dvc` command and test process
# compiles TensorFlow, MLflow and DVC from source again, 5-13 s of CPU each. The first run writes it.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup repro exp study study-report test ui lint format lock check-lock bench clean-venv

setup: $(STAMP)

# Rebuilt when missing or stale (the lock file or the package metadata changed).
$(STAMP): requirements.lock pyproject.toml scripts/setup-venv
	@python=$$(scripts/find-python $(PYTHON)) && scripts/setup-venv $(VENV) "$$python" $(TF)
	@rm -f $(VENV)/.installed-*
	@touch $@

repro: $(STAMP)
	$(BIN)/dvc repro

# A named preset (src/wae/presets.py) as one DVC experiment: make exp PRESET=post
exp: $(STAMP)
	$(BIN)/dvc exp run $$($(BIN)/python -m wae.presets $(PRESET))

# A study: every member (setting x seed) as a queued DVC experiment, then its report from MLflow.
# Members already done are not rerun; interrupted, it carries on where the queue stands.
study: $(STAMP)
	$(BIN)/python scripts/study.py run $(STUDY) --jobs $(JOBS) $(STUDY_ARGS)

study-report: $(STAMP)
	$(BIN)/python scripts/study.py report $(STUDY) $(STUDY_ARGS)

test: $(STAMP)
	$(BIN)/ruff check src stages tests benchmarks scripts
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadscope $(PYTEST_ARGS)

# The runs' page (MLflow's UI opens experiments on its GenAI overview unless told otherwise).
ui: $(STAMP)
	@MLFLOW_TRACKING_URI= $(BIN)/python -m wae.tracking url 2>/dev/null | sed 's/^/Runs: /' || true
	$(BIN)/mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///mlflow.db

lint: $(STAMP)
	$(BIN)/ruff check src stages tests benchmarks scripts
	$(BIN)/ruff format --check src stages tests benchmarks scripts

format: $(STAMP)
	$(BIN)/ruff format src stages tests benchmarks scripts
	$(BIN)/ruff check --fix src stages tests benchmarks scripts

bench: $(STAMP)
	$(BIN)/python benchmarks/train_step.py --out reports/benchmark.json

lock:
	UV_PYTHON_DOWNLOADS=never $(if $(wildcard $(BIN)/uv),$(BIN)/uv,uv) pip compile --universal --python-version 3.11 --quiet requirements.in -o requirements.lock

# Each supported platform and Python finds a wheel for every pinned package (antlr4, pure Python,
# ships only a source archive). Needs network access to the package index, not the platform.
check-lock: $(STAMP)
	@for platform in x86_64-manylinux_2_28 aarch64-apple-darwin; do for version in 3.11 3.12 3.13; do \
	  UV_PYTHON_DOWNLOADS=never $(BIN)/uv pip compile --quiet --no-header --no-deps --only-binary :all: \
	    --no-binary antlr4-python3-runtime --python-platform $$platform --python-version $$version \
	    requirements.lock -o /dev/null || { echo "lock: does not resolve for $$platform, Python $$version"; exit 1; }; \
	  echo "lock: resolves for $$platform, Python $$version"; done; done

clean-venv:
	rm -rf $(VENV)
