# Two commands for a new machine: `make run` and `make test`. Everything else is for developers.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test install services clients browser lint format schema bench clean

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

## make test: install (with the clients the end-to-end tests drive), make sure PostgreSQL and
## Redis are up, run the whole suite: one pytest-xdist worker per core, each with its own databases
## (tests marked xdist_group share one worker: loadgroup).
test: install services clients
	$(BIN)/python -m pytest -n auto --dist loadgroup

services:
	./scripts/services.sh

# The clients our users run, for the tests in tests/e2e (not needed by `make run`): the npm
# packages from the committed lock file, and Debian's chromium with its chromedriver.
CLIENTS := tests/clients
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(CLIENTS)/node_modules/.package-lock.json: $(CLIENTS)/package-lock.json
	cd $(CLIENTS) && npm ci --no-audit --no-fund

browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends \
	    chromium chromium-driver; }

clients: $(CLIENTS)/node_modules/.package-lock.json browser

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

schema: install
	$(BIN)/agencyhub export-schema schema.graphql

## make bench: the viewer benchmark of BENCHMARKS.md. Every script in bench/ runs the same way,
## from the repository root: .venv/bin/python bench/<script>.py (they import bench/harness.py).
bench: install services
	$(BIN)/python bench/viewer_http.py

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
