# Every target that needs Python first makes sure .venv exists and holds the project.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BUF := node_modules/.bin/buf
PROTOS := $(shell find protos -name '*.proto' | sort)

.PHONY: help venv gen check-gen lint format test unit run bench certs clean

help:
	@echo "make run    - start the three services (embedded PostgreSQL under ./var unless DATABASE_URL is set)"
	@echo "make test   - gen drift check, lint, and the whole test suite"
	@echo "make gen    - regenerate gen/ from protos/"
	@echo "make lint   - buf lint, ruff, mypy"
	@echo "make bench  - the benchmark (BENCH_ARGS=--quick for a short run)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(BUF): package.json package-lock.json
	npm ci --silent --no-audit --no-fund
	touch $@

# Regenerate gen/ from scratch: messages, .pyi stubs and gRPC stubs.
gen: $(STAMP)
	rm -rf gen
	$(PY) tools/gen.py gen

# Fails when gen/ differs from what protos/ produce.
check-gen: $(STAMP)
	@rm -rf .gen-check && $(PY) tools/gen.py .gen-check >/dev/null
	@if ! diff -r -x __pycache__ gen .gen-check >/dev/null; then \
		diff -r -x __pycache__ gen .gen-check | head -20; rm -rf .gen-check; \
		echo "gen/ does not match protos/: run make gen and commit"; exit 1; fi
	@rm -rf .gen-check
	@echo "gen/ matches protos/"

lint: $(STAMP) $(BUF)
	$(BUF) lint
	$(BIN)/ruff check services tests tools
	$(BIN)/ruff format --check services tests tools
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format services tests tools
	$(BIN)/ruff check --fix services tests tools

test: check-gen lint
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest -m 'not e2e'

run: $(STAMP)
	$(BIN)/energy-ingest run

# The full benchmark (about 12 minutes here); BENCH_ARGS=--quick for the two-minute version.
# It uses DATABASE_URL's server (in a database of its own) or an embedded PostgreSQL.
bench: $(STAMP)
	$(BIN)/energy-ingest bench $(BENCH_ARGS)

# A development CA and certificates under var/certs (server, AnalyticsService, operator, a
# device CHG-001); prints the TLS_* variables for a run with mutual TLS.
certs: $(STAMP)
	$(PY) -m services.common.certs var/certs

clean:
	rm -rf .gen-check .pytest_cache .mypy_cache .ruff_cache
