# paradigms: `make run` installs the core on first use and runs the default experiment; `make test`
# installs the development extras (every optional part, pytest, ruff) and runs the tests.
VENV   ?= .venv
PY     := $(VENV)/bin/python
CORE   := $(VENV)/.installed-core
DEV    := $(VENV)/.installed-dev

.DEFAULT_GOAL := help
.PHONY: help install install-dev run test lint format bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Each stamp is redone when pyproject.toml changes; dev includes the core, so it stamps both.
$(CORE): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $(CORE)

$(DEV): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(CORE) $(DEV)

install: $(CORE) ## Create .venv and install the core (again only when pyproject.toml changed)

install-dev: $(DEV) ## Install every optional part and the test and lint tools (docs/install.md)

run: $(CORE) ## Run the default experiment (fine-tuning on digits, offline)
	$(PY) cli.py

test: $(DEV) ## Run the test suite (CPU only, no downloads)
	$(PY) -m pytest

lint: $(DEV) ## Check lint and formatting with ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(DEV) ## Fix lint and formatting with ruff
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(DEV) ## Run every benchmark in bench/ (writes bench/results/)
	for script in bench/bench_*.py; do $(PY) $$script || exit 1; done

clean: ## Remove run outputs, caches and build files (keeps .venv)
	rm -rf outputs/*/ multirun .pytest_cache .ruff_cache *.egg-info
	find . -name __pycache__ -not -path './$(VENV)/*' -exec rm -rf {} +
