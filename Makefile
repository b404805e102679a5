# ShopEdge: `make demo` sets up and plays the counter flow; `make test` runs every check.
# Each target installs only what it runs: demo = the runtime + the relay the demo plays
# in-process; test adds the test tools; bench adds the benchmarks' comparison libraries.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HASH := $(shell cat pyproject.toml | sha1sum | cut -c1-12)
DEMO_STAMP := $(VENV)/.installed-demo-$(HASH)
TEST_STAMP := $(VENV)/.installed-test-$(HASH)
BENCH_STAMP := $(VENV)/.installed-bench-$(HASH)
STAMP := $(TEST_STAMP)

.PHONY: demo demo-once test lint typecheck imports pytest bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[demo]'
	rm -f $(VENV)/.installed-demo-* && touch $@

$(TEST_STAMP): pyproject.toml $(DEMO_STAMP)
	$(PY) -m pip install -q -e '.[demo,test]'
	rm -f $(VENV)/.installed-test-* && touch $@

$(BENCH_STAMP): pyproject.toml $(DEMO_STAMP)
	$(PY) -m pip install -q -e '.[demo,bench]'
	rm -f $(VENV)/.installed-bench-* && touch $@

demo: $(DEMO_STAMP)
	deploy/system-deps.sh demo
	deploy/ensure-mosquitto.sh
	$(PY) -m agent demo

demo-once: $(DEMO_STAMP)
	deploy/system-deps.sh demo
	$(PY) -m agent demo --once

lint: $(STAMP)
	$(PY) -m ruff check .

typecheck: $(STAMP)
	$(PY) -m mypy

imports: $(STAMP)
	$(VENV)/bin/lint-imports

pytest: $(STAMP)
	$(PY) -m pytest -q

test: $(STAMP)
	deploy/system-deps.sh test
	deploy/ensure-mosquitto.sh
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -p no:cacheprovider

bench: $(BENCH_STAMP)
	deploy/system-deps.sh demo
	for b in bench/[!_]*.py; do echo "== $$b"; $(PY) $$b; done

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
