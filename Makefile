# camswarm: `make demo` runs a local network, `make test` runs the test suite.
# Both install what is missing first (`make deps`, idempotent).

VENV ?= .venv
BIN := $(VENV)/bin
CAMSWARM_STATE ?= $(HOME)/.local/state/camswarm
DEMO_DIR ?= $(CAMSWARM_STATE)/demo
MIRRORS ?= 2
CAMERAS ?= 2

.PHONY: deps deps-test bench-deps bench check lint typecheck test test-unit test-integration chaos demo demo-down clean

deps:
	@VENV=$(VENV) bash tools/deps.sh

deps-test:
	@VENV=$(VENV) bash tools/deps.sh --test

bench-deps:
	@VENV=$(VENV) bash tools/deps.sh --bench

# Measure and regenerate docs/benchmarks.md with its figures and docs/bench/results.json (about
# 45 min). QUICK=1: a smoke run with short durations (about 7 min); ONLY=lag,capacity: those sections.
bench: bench-deps
	$(BIN)/python bench/report.py $(if $(QUICK),--quick) $(if $(ONLY),--only $(ONLY))

lint: deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: deps
	$(BIN)/mypy

check: lint typecheck

test-unit: deps
	$(BIN)/pytest -m unit tests/unit

test-integration: deps-test
	$(BIN)/pytest -m integration tests/integration

test: deps-test check
	$(BIN)/pytest tests

demo: deps
	$(BIN)/camswarm devnet up --dir $(DEMO_DIR) --mirrors $(MIRRORS) --cameras $(CAMERAS)

# Every fault in turn on a --netns devnet (root): 4 cameras, 2 mirrors, 2-minute faults (about 12 min).
CHAOS_DIR ?= $(CAMSWARM_STATE)/chaos-$(shell date +%Y%m%dT%H%M%S)
chaos: deps
	$(BIN)/camswarm devnet chaos --dir $(CHAOS_DIR) --cameras 4 --mirrors 2 --hold 120 --bound 300

demo-down:
	$(BIN)/camswarm devnet down --dir $(DEMO_DIR)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
