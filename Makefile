# interpscan: `make demo` and `make test` each set up everything they need in .venv on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Users bring their own torch; the project pins none. This is what gets installed into a fresh .venv
# before the project (a CPU build that lies on this machine's disk), so the project's torch>=2.3 is met.
TORCH ?= torch==2.13.0
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
CHECKED := interpscan tests examples scripts benchmarks

.PHONY: install dev demo paper test lint typecheck pytest clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch is installed first and only when the venv has none, so a torch the user put there is kept.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH)"
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -e ".[dev]"
	touch $@

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/interpscan demo --out interpscan-demo --force

# The seed paper reproduced at small scale (docs/paper.md): needs the real Fashion-MNIST
# (apt-get install dataset-fashion-mnist); about 15 minutes on a 2-core CPU.
paper: install
	$(BIN)/python examples/paper/reproduce.py --out paper-out --force

lint: dev
	$(BIN)/ruff check $(CHECKED)
	$(BIN)/ruff format --check $(CHECKED)

typecheck: dev
	$(BIN)/mypy

# Two workers (pytest-xdist), one torch thread each (tests/conftest.py); a test file stays on one worker, so its
# module fixtures are built once. PYTEST_FLAGS= runs the suite in one process.
PYTEST_FLAGS ?= -n 2 --dist loadfile
pytest: dev
	$(BIN)/python -m pytest $(PYTEST_FLAGS)

test: lint typecheck pytest

clean:
	rm -rf $(VENV) interpscan-demo interpscan-out paper-out .mypy_cache .ruff_cache .pytest_cache
