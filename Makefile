# Two entry points for a fresh clone (see README): `make demo` and `make test`.
# Both create the local virtual environment .venv on first use and reinstall when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
# the demo needs the runtime only; tests and lint also need the dev extras (pytest, ruff, mypy, onnx, ...)
# and the torch-free bundle runtime in runtime/ (medseg-runtime, docs/export.md)
RUNTIME := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed

.PHONY: demo test lint

$(RUNTIME): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e .
	touch $(RUNTIME)

$(STAMP): pyproject.toml runtime/pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]' -e runtime
	touch $(RUNTIME) $(STAMP)

demo: $(RUNTIME)
	$(VENV)/bin/medseg demo

test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python -m pytest

lint: $(STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check src tests benchmarks runtime
	$(VENV)/bin/ruff format --check src tests benchmarks runtime
	$(VENV)/bin/mypy
