# Two commands for a new machine: `make run` and `make test`. Everything else is for developers.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test install services clients lint format schema bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

## make run: install, migrate and serve (embedded SQLite + in-process broker unless
## DATABASE_URL / REDIS_URL are set). HOST and PORT are respected.
run: install
	$(BIN)/agencyhub migrate
	$(BIN)/agencyhub serve

## make test: install, make sure PostgreSQL and Redis are up, run the whole suite.
test: install services clients
	$(BIN)/python -m pytest

services:
	./scripts/services.sh

# The clients our users run, for the tests in tests/e2e (not needed by `make run`): the npm
# packages from the committed lock file.
CLIENTS := tests/clients

$(CLIENTS)/node_modules/.package-lock.json: $(CLIENTS)/package-lock.json
	cd $(CLIENTS) && npm ci --no-audit --no-fund

clients: $(CLIENTS)/node_modules/.package-lock.json

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

schema: install
	$(BIN)/agencyhub export-schema schema.graphql

bench: install services
	$(BIN)/python bench/viewer_http.py

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
