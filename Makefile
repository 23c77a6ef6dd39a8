# Two entry points for a fresh clone (see README): `make demo` and `make test`.
# Both create the local virtual environment .venv on first use and reinstall when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
# the demo needs the runtime only; tests and lint also need the dev extras (pytest, ruff, mypy, onnx, ...)
# and the torch-free bundle runtime in runtime/ (medseg-runtime, docs/export.md)
RUNTIME := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed
# Flower (`medseg federated`, tests/federated) pins typer, rich, fastapi, starlette, uvicorn and protobuf to
# minor versions older than the ones medseg is tested with (with them typer's import warns and the suite,
# which turns warnings into errors, stops): the tests install flwr without its pins, beside the packages its
# gRPC server and clients import (docs/federated.md)
FLOWER := flwr==1.42.0
FLOWER_DEPS := 'grpcio>=1.70,<2' 'grpcio-health-checking>=1.70,<2' 'iterators>=0.0.2,<0.0.3' 'pycryptodome>=3.18' \
	'tomli>=2' 'tomli-w>=1' 'pathspec>=1' 'cryptography>=42' 'requests>=2.32' 'httpx>=0.28' 'pyyaml>=6' \
	'prompt-toolkit>=3' 'sqlalchemy[asyncio]>=2' 'alembic>=1.18' 'certifi'

.PHONY: demo test lint

$(RUNTIME): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e .
	touch $(RUNTIME)

$(STAMP): pyproject.toml runtime/pyproject.toml Makefile
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]' -e runtime $(FLOWER_DEPS)
	$(VENV)/bin/python -m pip install --quiet --no-deps '$(FLOWER)'
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
