# Two commands: `make demo` (install + run the default workflow) and `make test`.
# Both create/use a local virtual environment in .venv (Python >= 3.11, pip); docs/install.md tells
# what that installs (and a CPU-only or exact-version install instead).
#
# `make test` runs the suite on TEST_WORKERS pytest-xdist workers (default 2; `make test TEST_WORKERS=0`:
# one process, no xdist). The tests that share the end-to-end fixture run on one worker (--dist
# loadgroup, tests/conftest.py). The real-SLURM test runs only with LSPIPE_TEST_SLURM=1 (.ci/run sets it).

PYTHON ?= python3
VENV ?= .venv
TEST_WORKERS ?= 2
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install demo test lint report bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/snakemake --cores all

test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup -ra --durations=15

lint: install
	$(BIN)/snakemake --lint

report: install
	$(BIN)/snakemake --report report.html

bench: install
	$(BIN)/lspipe bench --out benchmarks/out/bench.json

clean:
	rm -rf results .snakemake report.html
