# Two commands do all the set-up on a fresh machine:
#   make run    install expbot in .venv and run it on its embedded default (SQLite + local runner)
#   make test   install the test dependencies (PostgreSQL too) and run the whole suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test install install-test services cluster lint lock browser

$(BIN)/python:
	@echo "creating the virtual environment $(VENV) ..."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Installed once, and again only when pyproject.toml (the dependencies, the entry point) is newer than
# the stamp: the install is editable, so a change to the code needs none. Say so, as pip --quiet is
# silent for a minute or more on a fresh machine.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@echo "installing expbot and its dependencies into $(VENV) (the first time takes a minute or two) ..."
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	@echo "installing expbot with its test dependencies into $(VENV) ..."
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

run: install
	$(BIN)/expbot serve

# Integration tests run real servers (the tests start throwaway ones on loopback): PostgreSQL for
# the store's contract tests, Prometheus for idle-GPU detection. Both come from Debian's packages.
services:
	@missing=""; \
	  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	  command -v prometheus >/dev/null 2>&1 || missing="$$missing prometheus"; \
	  if [ -n "$$missing" ]; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	  fi

# The Kubernetes tests run a real control plane (etcd, kube-apiserver, controller-manager, scheduler,
# KWOK GPU nodes) built from Go modules; cached by version, so only the first build takes ~10 minutes.
cluster:
	bash tests/cluster/build.sh
	bash tests/cluster/build_kueue.sh
	bash tests/cluster/build_helm.sh

# The Slack sandbox's acceptance tests drive Debian's chromium with Playwright (never a downloaded
# browser); the emoji font draws Slack's emoji in its screenshots.
browser:
	@missing=""; \
	  [ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	  [ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || missing="$$missing fonts-noto-color-emoji"; \
	  if [ -n "$$missing" ]; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	  fi

# The image's dependencies, pinned with hashes (requirements.lock, used by the Dockerfile): resolved
# from pyproject.toml in a throwaway venv, for the image's Python (3.11), with the build backend's own
# requirements (setuptools, wheel) so that building expbot in the image fetches nothing. Run after changing dependencies.
LOCK_VENV := $(or $(TMPDIR),/tmp)/expbot-lock-venv
lock:
	$(PYTHON) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/pip install --quiet pip-tools==7.6.2
	CUSTOM_COMPILE_COMMAND='make lock' $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
	  --all-build-deps --allow-unsafe --output-file requirements.lock pyproject.toml

lint: install-test
	$(BIN)/lint-imports

test: install-test services cluster browser lint
	$(BIN)/pytest
