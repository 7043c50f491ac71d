# Two commands do all the set-up on a fresh machine:
#   make run    install expbot in .venv and run it on its embedded default (SQLite + local runner)
#   make test   install the test dependencies (PostgreSQL too) and run the whole suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test install install-test postgres lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'

run: install
	$(BIN)/expbot serve

# The store's contract tests need a real PostgreSQL server; the tests start a throwaway one.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q postgresql; }

lint: install-test
	$(BIN)/lint-imports

test: install-test postgres lint
	$(BIN)/pytest
