# Two commands: `make demo` (install + run the default workflow) and `make test`.
# Both create/use a local virtual environment in .venv (Python >= 3.11, pip).

PYTHON ?= python3
VENV ?= .venv
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
	$(BIN)/python -m pytest -ra --durations=15

lint: install
	$(BIN)/snakemake --lint

report: install
	$(BIN)/snakemake --report report.html

bench: install
	$(BIN)/lspipe bench --out benchmarks/out/bench.json

clean:
	rm -rf results .snakemake report.html
