# meshnet: `make run` sets up and starts the main job; `make test` sets up and runs all tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install test-deps test run bench clean

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

bench: install
	$(BIN)/python bench/bench_apiserver.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
