# Two commands do everything: `make demo` and `make test`. Both create .venv from requirements.lock first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast bench lock clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

# An embedded PostgreSQL, synthetic data in all 19 tables, one real flush into a local DuckLake, and the result.
demo: install
	$(BIN)/postgres-ducklake-flusher demo

# The whole suite: real PostgreSQL (pgserver, or $$FLUSHER_TEST_PG_URI), DuckLake, Prefect and S3 (moto).
test: install
	$(BIN)/python -m pytest -q

# Without the slow crash/concurrency tests.
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

bench: install
	$(BIN)/python -m bench.run

# Refresh the lock after changing pyproject.toml dependencies.
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv && .lockenv/bin/pip install --quiet -e ".[test]" \
	  && .lockenv/bin/pip freeze --exclude-editable > requirements.lock && rm -rf .lockenv

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
