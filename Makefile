# meshnet: `make up` sets up and starts the main job (a single-node cluster); `make test` sets up and runs all tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install test-deps test run up down status bench clean

$(BIN)/activate:
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python3-venv missing: installing it with apt-get"; \
	  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && \
	  $(PYTHON) -m venv $(VENV); }

$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

install: $(VENV)/.installed

# System packages the tests drive (installed only when missing).
test-deps: install
	@scripts/install-test-deps

test: test-deps
	scripts/run-tests

run: install
	$(BIN)/meshnet-apiserver $(ARGS)

# A single-node cluster: API server on 127.0.0.1:6443, a node in its own network namespace,
# the ingress on 127.0.0.1:80/443 (docs/up.md). Needs root.
up: install
	$(BIN)/meshctl up $(ARGS)

down: install
	$(BIN)/meshctl down $(ARGS)

status: install
	$(BIN)/meshctl status $(ARGS)

# Every benchmark against its reference server, one table (bench/results/<date>.md, README).
bench:
	bench/run $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
