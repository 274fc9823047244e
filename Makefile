# Two commands do everything: `make demo` and `make test`. Both create .venv from requirements.lock first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo lint test test-fast test-harness fuzz bench bench-catchup bench-remote lock clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

# An embedded PostgreSQL, synthetic data in all 21 tables, one real flush into a local DuckLake, and the result.
demo: install
	$(BIN)/postgres-ducklake-flusher demo

# Format, lint and the import layers (README "Layout").
lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/python -m tests.layers

# The whole suite after lint, in three layers (README "Tests"): tests/unit (no servers), tests/harness (Prefect's
# in-process test harness), tests/server (real PostgreSQL, Prefect server and S3). Two workers, each with its own
# PostgreSQL, Prefect server and S3 server (session fixtures are per process); tests/harness all go to one worker.
test: lint
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

# The unit layer: no servers, seconds.
test-fast: install
	$(BIN)/python -m pytest -q tests/unit

# The unit and Prefect-harness layers: no PostgreSQL, no Prefect server.
test-harness: install
	$(BIN)/python -m pytest -q tests/unit tests/harness

# The property test of config loading with 20000 examples per property (the normal suite runs 200).
fuzz: install
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q -p no:cacheprovider --timeout 0 tests/unit/test_config_fuzz.py

# Benchmark tools (dlt, matplotlib, pyinstrument) live in their own venv, never in the service's.
BENCH_VENV  := bench/.venv
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): bench/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet -r bench/requirements.txt
	touch $(BENCH_STAMP)

# Ceiling, seed pattern, this flusher and dlt on identical seed-sized and 2M-row data; writes bench/results/bench.*
# and README's Performance table. BENCH_ARGS="--reps 5" etc. pass options through.
bench: install $(BENCH_STAMP)
	$(BIN)/python -m bench.run --peer-python $(BENCH_VENV)/bin/python $(BENCH_ARGS)

# The >= 10M-row backlog through the real flow with a ledger cap per run (too long for `make bench`).
bench-catchup: install $(BENCH_STAMP)
	$(BIN)/python -m bench.run --catchup --peer-python $(BENCH_VENV)/bin/python $(BENCH_ARGS)

# The deployed regime: catalog PostgreSQL and S3 (moto) behind proxies adding RTT_MS of round trip; ceiling, seed
# pattern and this flusher at SIZES; writes bench/results/remote-<RTT>ms.* (README "With a remote catalog ...").
RTT_MS ?= 30
SIZES  ?= seed,medium
bench-remote: install
	$(BIN)/python -m bench.remote --rtt-ms $(RTT_MS) --sizes $(SIZES) $(BENCH_ARGS)

# Refresh the lock after changing pyproject.toml dependencies.
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv && .lockenv/bin/pip install --quiet -e ".[test]" \
	  && .lockenv/bin/pip freeze --exclude-editable > requirements.lock && rm -rf .lockenv

clean:
	rm -rf $(VENV) $(BENCH_VENV) .pytest_cache build *.egg-info
