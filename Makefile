# Two commands do everything on a fresh machine:  make demo  and  make test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU-only machine takes the local CPU build; a GPU machine can pass TORCH_SPEC=torch
# (or a CUDA build) to get CUDA kernels.
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,eval
export HARNESS_CACHE ?= $(CURDIR)/.cache/harness

.PHONY: setup demo test test-all bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

demo: setup
	$(PY) -m harness -m -cn demo
	@echo "demo summary: runs/demo/summary.md (and summary.csv)"

test: setup
	$(PY) -m pytest -m "not slow and not gpu" -q

test-all: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m pytest tests/bench -q --benchmark-only

clean:
	rm -rf runs .cache .pytest_cache
