"""Table isolation (C5) and one flusher at a time (C6)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flusher.embedded import create_hot_schema
from tests.helpers import ENABLED, ROOT, flush, task_attempts, wait_for_flusher_lock, write_config

pytestmark = pytest.mark.usefixtures("prefect_api")

OTHERS = [t for t in ENABLED if t != "contract_code_snapshot_v1"]


def test_a_missing_table_fails_alone_and_catches_up_after_the_fix(hot):
    # Named in flush.tables, a missing table is an error (by default it would be skipped); with retries configured,
    # it fails at its first attempt: retrying cannot create a table.
    hot.config = write_config(hot, flush={"tables": ENABLED, "retries": 2, "retry_delay_seconds": 0})
    hot.execute("DROP TABLE contract_code_snapshot_v1")
    hot.load(1, 10, tables=OTHERS)
    state = flush(hot)
    assert state.is_failed()
    assert "contract_code_snapshot_v1" in state.message and "does not exist" in state.message
    assert task_attempts(state, "contract_code_snapshot_v1") == 1, "no retries for an error retrying cannot fix"
    assert all(hot.hot_count_at_or_below(t, 10) == 0 for t in OTHERS), "the other 18 tables flush and delete"
    hot.assert_exactly_once(OTHERS)

    with hot.connect() as conn:
        create_hot_schema(conn)  # the operator restores the table; old ledgers' rows arrive for it
    hot.install_audit(["contract_code_snapshot_v1"])
    hot.load(1, 10, tables=["contract_code_snapshot_v1"])
    state = flush(hot)
    assert state.is_completed(), state.message
    assert hot.assert_exactly_once()["contract_code_snapshot_v1"] == 10


def test_a_value_the_lake_rejects_fails_that_table_only(hot):
    for schema in ("public", "audit"):
        hot.execute(f"ALTER TABLE {schema}.effects_row_v1 ALTER COLUMN signer_weight TYPE TEXT")
    hot.load(1, 10)
    hot.execute(
        "UPDATE effects_row_v1 SET signer_weight = CASE WHEN ledger_sequence = 7 AND effect_index = 1 "
        "THEN 'heavy' ELSE effect_index::text END"
    )
    result = hot.run_cli("flush")
    assert result.returncode == 1
    reason = next(line for line in result.stderr.splitlines() if line.startswith("flush failed"))
    assert (
        "effects_row_v1" in reason and "heavy" in reason and "signer_weight" in reason and "ledgers <= 10" in reason
    ), reason
    assert hot.hot_count_at_or_below("effects_row_v1", 10) == 30, "the failed table keeps every row"
    assert hot.hot_count_at_or_below("operations_row_v2", 10) == 0
    hot.assert_exactly_once(unconfirmed_ok=True)

    hot.execute("UPDATE effects_row_v1 SET signer_weight = '5' WHERE signer_weight = 'heavy'")
    state = flush(hot)
    assert state.is_completed(), state.message
    assert hot.assert_exactly_once()["effects_row_v1"] == 30


def _waiting_for_the_lock_since(hot, waiting: subprocess.Popen, log: Path, timeout: float = 120):
    """The database time at which a session other than the lock holder was seen polling for the flusher lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if waiting.poll() is not None:
            raise AssertionError(f"the second flush exited instead of waiting: {log.read_text()[-3000:]}")
        rows = hot.execute(
            "SELECT now() FROM pg_stat_activity w WHERE w.datname = current_database() "
            "AND w.query LIKE 'SELECT pg_try_advisory_lock(%%' AND w.pid <> pg_backend_pid() "
            "AND NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = w.pid AND l.locktype = 'advisory' AND l.granted)"
        )
        if rows:
            return rows[0][0]
        time.sleep(0.1)
    raise AssertionError("no second flush polled for the lock")


def test_overlapping_flushes_never_interleave(hot):
    """One run at a time (C6): a run that finds the lock taken skips by default, and with flush.lock_wait_seconds it
    waits for the holder to finish, then flushes what arrived meanwhile. A skipped run also exits 0 and writes no run
    row, so the waiting run is proved by its own run row, not by its exit code."""
    hot.load(1, 10)
    go_on = hot.tmp / "first-may-go-on"
    env = {"FLUSHER_FAILPOINTS": f"after_mark=until={go_on}"}  # the first flush holds the lock until we say so
    first_log, waiting_log = hot.tmp / "first.log", hot.tmp / "waiting.log"
    first = subprocess.Popen(
        [sys.executable, "-m", "flusher.app.cli", "flush", "--config", str(hot.config)],
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=first_log.open("w"),
        stderr=subprocess.STDOUT,
    )
    waiting = None
    try:
        wait_for_flusher_lock(hot)
        skipped = flush(hot)
        assert skipped.is_completed() and skipped.name == "Skipped", skipped
        assert "another flush is running" in skipped.message
        hot.config = write_config(hot, flush={"lock_wait_seconds": 120})
        waiting = subprocess.Popen(
            [sys.executable, "-m", "flusher.app.cli", "flush", "--config", str(hot.config)],
            cwd=ROOT,
            stdout=waiting_log.open("w"),
            stderr=subprocess.STDOUT,
        )
        polling_since = _waiting_for_the_lock_since(hot, waiting, waiting_log)
        hot.load(11, 5)  # above the first run's watermark: only the waiting run can move these
        time.sleep(1.5)  # it keeps waiting (a run that gave up would have let go of its session by now)
        _waiting_for_the_lock_since(hot, waiting, waiting_log, timeout=0.5)  # still polling, not gone
        go_on.touch()
        assert first.wait(timeout=120) == 0, first_log.read_text()[-3000:]
        assert waiting.wait(timeout=180) == 0, waiting_log.read_text()[-3000:]
    finally:
        go_on.touch()
        for process in (first, waiting):
            if process and process.poll() is None:
                process.kill()
                process.wait()
    assert "Skipped" not in waiting_log.read_text(), waiting_log.read_text()[-3000:]
    runs = hot.execute("SELECT status, watermark, started_at, finished_at FROM flusher_state.runs ORDER BY batch_id")
    assert [(status, watermark) for status, watermark, _, _ in runs] == [("completed", 10), ("completed", 15)], runs
    (_, _, _, first_finished), (_, _, second_started, _) = runs
    assert polling_since < first_finished, "the second run was already waiting while the first held the lock"
    assert first_finished <= second_started, "the second run took the lock only after the first finished"
    assert all(hot.hot_count_at_or_below(t, 15) == 0 for t in ENABLED), "the waiting run moved the rows that arrived"
    hot.assert_exactly_once()


def test_an_unreachable_hot_buffer_is_named_and_nothing_moves(hot):
    hot.config = write_config(hot, postgres={"host": "127.0.0.1", "port": 1})
    result = hot.run_cli("flush")
    assert result.returncode == 1
    assert "cannot connect to PostgreSQL postgres@127.0.0.1:1" in result.stderr


def test_an_unreachable_lake_catalog_fails_before_anything_is_deleted(hot):
    hot.load(1, 5)
    hot.config = write_config(
        hot, ducklake={"catalog_path": "host=127.0.0.1 port=1 dbname=catalog user=x password=s3cret"}
    )
    result = hot.run_cli("flush")
    assert result.returncode == 1
    assert "cannot connect to the DuckLake catalog x@127.0.0.1:1/catalog" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout
    assert hot.hot_count_at_or_below("ledgers_row_v2", 5) == 5
