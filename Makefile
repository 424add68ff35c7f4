# Every target creates .venv when missing: torch==2.13.0 first (the local CPU wheel), then adaptlr with its extras.
# `make demo` installs the light set (lab + dev); `make test` adds the extras the whole suite needs (PostgreSQL
# store, Triton's interpreter, the framework integrations).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test lint bench setup clean postgres

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,lab]"
	touch $(STAMP)

$(TEST_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install -q torch==2.13.0 -e ".[dev,lab,store,triton,integrations]"
	touch $(TEST_STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m adaptlr.demo

# the PostgreSQL tests start a throwaway server from these binaries; without them they are reported as skipped
postgres:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { command -v apt-get >/dev/null && (apt-get install -y -q postgresql >/dev/null 2>&1 || \
	    sudo -n apt-get install -y -q postgresql >/dev/null 2>&1); } || \
	  echo "PostgreSQL could not be installed: its tests will be reported as skipped"

test: $(TEST_STAMP) postgres
	$(BIN)/python -m pytest -q -n 2 tests

lint: $(STAMP)
	$(BIN)/ruff check adaptlr tests benchmarks examples
	$(BIN)/ruff format --check adaptlr tests benchmarks examples

bench: $(STAMP)
	$(BIN)/python benchmarks/step_time.py

clean:
	rm -rf $(VENV) build *.egg-info
