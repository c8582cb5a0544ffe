# paradigms: `make run` installs on first use and runs the default experiment; `make test` runs the tests.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help install run test lint format bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install the project (only when pyproject.toml changed)

run: $(STAMP) ## Run the default experiment (fine-tuning on digits, offline)
	$(PY) cli.py

test: $(STAMP) ## Run the test suite (CPU only, no downloads)
	$(PY) -m pytest

lint: $(STAMP) ## Check lint and formatting with ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP) ## Fix lint and formatting with ruff
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP) ## Run every benchmark in bench/ (writes bench/results/)
	for script in bench/bench_*.py; do $(PY) $$script || exit 1; done

clean: ## Remove run outputs, caches and build files (keeps .venv)
	rm -rf outputs/*/ multirun .pytest_cache .ruff_cache *.egg-info
	find . -name __pycache__ -not -path './$(VENV)/*' -exec rm -rf {} +
