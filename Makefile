# camswarm: `make demo` runs a local network, `make test` runs the test suite.
# Both install what is missing first (`make deps`, idempotent).

VENV ?= .venv
BIN := $(VENV)/bin
CAMSWARM_STATE ?= $(HOME)/.local/state/camswarm
DEMO_DIR ?= $(CAMSWARM_STATE)/demo
MIRRORS ?= 2
CAMERAS ?= 2

.PHONY: deps deps-test bench-deps check lint typecheck test test-unit test-integration demo demo-down clean

deps:
	@VENV=$(VENV) bash tools/deps.sh

deps-test:
	@VENV=$(VENV) bash tools/deps.sh --test

bench-deps:
	@VENV=$(VENV) bash tools/deps.sh --bench

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

demo-down:
	$(BIN)/camswarm devnet down --dir $(DEMO_DIR)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
