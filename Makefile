# On a fresh machine:  make setup  (then  source .venv/bin/activate), or straight away  make demo  /  make test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU-only machine takes the local CPU build; a GPU machine can pass TORCH_SPEC=torch
# (or a CUDA build) to get CUDA kernels.
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,eval
# No HARNESS_CACHE here: make and direct commands share the one default cache, run.cache_dir
# = $HARNESS_CACHE or ~/.cache/harness (README, "Cache").

.PHONY: setup demo test test-readme test-browser test-all bench clean clean-cache reports reports-rerun

setup: $(VENV)/.installed
	@echo "setup done. In each new shell:  source $(VENV)/bin/activate   then:  python -m harness --help"

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

demo: setup
	$(PY) -m harness -cn demo
	@echo "demo summary: runs/demo/summary.md (and summary.csv)"

test: setup
	$(PY) -m pytest -m "not slow and not gpu and not browser" -q

# Runs every README block tagged `bash cpu` / `console cpu`, as a newcomer would type it (a few minutes).
test-readme: setup
	$(PY) -m pytest tests/integration/test_readme.py -q

# The offline HTML report in a real headless Chromium (skips with a reason when chromium/chromedriver are missing).
test-browser: setup
	$(PY) -m pytest -m browser -q

test-all: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m pytest tests/bench -q --benchmark-only

# The committed example reports: reports/<name>/ rebuilt from reports/<name>/records/ alone (no training, no
# network), deterministically, so `make reports && git diff --exit-code reports/` passes.
REPORT_SWEEPS ?= demo qlora-dora-tiny rank-quant-tiny methods-tiny targets-tiny data-scaling-tiny seeds-tiny

reports: setup
	@for dir in reports/*/records/*/; do \
		name=$$(basename $$dir); \
		$(PY) -m harness.report $$dir report.out=reports/$$name || exit 1; \
	done

# Rerun the tiny named sweeps in a fresh run root (nothing reused), export their records, rebuild the reports.
reports-rerun: setup
	rm -rf .reports-runs
	@for name in $(REPORT_SWEEPS); do \
		$(PY) -m harness -cn $$name run.root=.reports-runs; \
		$(PY) tools/export_records.py .reports-runs/$$name reports/$$name/records || exit 1; \
	done
	$(MAKE) reports

clean:
	rm -rf runs .cache .pytest_cache .reports-runs

clean-cache:
	rm -rf "$${HARNESS_CACHE:-$$HOME/.cache/harness}"
