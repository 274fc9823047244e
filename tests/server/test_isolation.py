"""Table isolation (C5) and one flusher at a time (C6)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

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


def test_overlapping_flushes_never_interleave(hot):
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
        time.sleep(2)  # let it reach the lock and wait (if it were faster, the assertions below still hold)
        go_on.touch()
        assert waiting.wait(timeout=180) == 0, waiting_log.read_text()[-3000:]
        assert first.wait(timeout=120) == 0, first_log.read_text()[-3000:]
    finally:
        first.kill()
    # A skipped run also exits 0 and writes no run row: the waiting flush must have waited and then flushed.
    assert "Skipped" not in waiting_log.read_text(), waiting_log.read_text()[-3000:]
    runs = hot.execute("SELECT batch_id, status, started_at, finished_at FROM flusher_state.runs ORDER BY batch_id")
    assert [status for _, status, _, _ in runs] == ["completed", "completed"], runs
    for (_, _, _, finished), (_, _, started, _) in zip(runs, runs[1:], strict=False):
        assert finished <= started, "a run started before the previous one finished"
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
