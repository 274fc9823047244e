"""Issue 10: every known table is flushed (or reported); rows that cannot move are counted and shown; the Go
service's maintenance section works; a table typo is a configuration error;
errors retrying cannot fix are not retried."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from flusher.app.health import HealthProbe, StateCollector
from flusher.hot import make_pool
from flusher.registry import registry
from tests.helpers import ENABLED, flush, task_attempts, write_config

pytestmark = pytest.mark.usefixtures("prefect_api")
LATER = ["contract_creations_v1", "token_transfers_stream_v1"]  # flushed by the Go service at HEAD, not in our old 19


def _health_and_metrics(hot) -> tuple[int, dict, str]:
    """/health and /metrics as the service computes them (same probe and collector), without starting `serve`."""
    settings = hot.settings()
    with make_pool(settings.postgres) as pool:
        probe = HealthProbe(settings, pool, lambda: None, interval_seconds=600)
        probe.refresh()  # the server reads in the background; here, now
        status, body = probe.health()
        metrics_registry = CollectorRegistry(auto_describe=False)
        metrics_registry.register(StateCollector(probe))
        metrics = generate_latest(metrics_registry).decode()
    return status, body, metrics


def _lake_count(hot, table: str) -> int:
    from flusher.lake import LakeSession

    with LakeSession(hot.settings(), attach_hot=False) as lake:
        return lake.cursor().execute(f"SELECT count(*) FROM {lake.table(table)}").fetchone()[0]


def _last_run_message(hot) -> str:
    return hot.execute("SELECT message FROM flusher_state.runs ORDER BY batch_id DESC LIMIT 1")[0][0]


def test_by_default_the_two_tables_the_go_service_also_flushed_are_flushed(hot):
    hot.load(1, 5)
    hot.load(1, 5, tables=LATER)
    state = flush(hot)
    assert state.is_completed(), state.message
    assert all(hot.hot_count_at_or_below(t, 5) == 0 for t in LATER), "nothing piles up in PostgreSQL"
    assert hot.assert_exactly_once(ENABLED + ["contract_creations_v1"])["contract_creations_v1"] == 5
    assert _lake_count(hot, "token_transfers_stream_v1") == 5  # no key to compare by: every row, once


def test_by_default_a_known_table_missing_from_the_hot_buffer_is_skipped_not_failed(hot):
    hot.execute("DROP TABLE token_transfers_stream_v1")
    hot.execute("DROP TABLE contract_code_snapshot_v1")
    others = [t for t in ENABLED if t != "contract_code_snapshot_v1"]
    hot.load(1, 5, tables=others)
    state = flush(hot)
    assert state.is_completed(), state.message
    assert "19/19 tables ok" in state.message, state.message
    hot.assert_exactly_once(others)
    # A run that names the missing table fails for it (at its first attempt), and only for it.
    hot.load(6, 2, tables=others)
    named = flush(hot, tables=["contract_code_snapshot_v1", "trades_row_v1"])
    assert named.is_failed() and "contract_code_snapshot_v1 does not exist" in named.message
    assert task_attempts(named, "contract_code_snapshot_v1") == 1
    assert hot.hot_count_at_or_below("trades_row_v1", 7) == 0
    # Refused before anything was written for it, the failure is still recorded, counted and shown (issue 13).
    [(status, error)] = hot.execute(
        "SELECT status, error FROM flusher_state.table_batches WHERE table_name = 'contract_code_snapshot_v1'"
    )
    assert status == "failed" and "does not exist" in error
    _, _, metrics = _health_and_metrics(hot)
    assert 'flusher_table_failures_total{table="contract_code_snapshot_v1"} 1.0' in metrics
    shown = hot.run_cli("status")
    line = next(ln for ln in shown.stdout.splitlines() if ln.startswith("contract_code_snapshot_v1"))
    assert "failed" in line and "confirmed" not in line, line


def test_an_explicit_list_reports_the_known_tables_it_leaves_out(hot):
    hot.config = write_config(hot, flush={"tables": ENABLED})
    hot.load(1, 4)
    hot.load(1, 3, tables=["contract_creations_v1"])
    assert flush(hot).is_completed()
    assert hot.hot_count_at_or_below("contract_creations_v1", 4) == 3, "a list is obeyed"

    status = hot.run_cli("status")
    assert status.returncode == 0, status.stderr
    line = next(line for line in status.stdout.splitlines() if line.startswith("contract_creations_v1"))
    assert "3" in line.split() and "NOT FLUSHED" in line, status.stdout
    assert "token_transfers_stream_v1" not in status.stdout, "an empty left-out table is no news"

    code, body, metrics = _health_and_metrics(hot)
    assert code == 503 and any("contract_creations_v1 (3 rows)" in r and "flush.tables" in r for r in body["reasons"])
    assert 'flusher_unflushed_table_rows{table="contract_creations_v1"} 3.0' in metrics
    assert 'flusher_stuck_rows{reason="unflushed_table",table="contract_creations_v1"} 3.0' in metrics

    init = hot.run_cli("init")
    assert init.returncode == 0, init.stderr
    assert "leaves out known tables: contract_creations_v1, token_transfers_stream_v1" in init.stdout
    assert "contract_creations_v1 (3 rows)" in init.stdout


def test_rows_with_a_null_ledger_are_counted_and_reported(hot):
    for schema in ("public", "audit"):
        hot.execute(f"ALTER TABLE {schema}.token_transfers_stream_v1 ALTER COLUMN ledger_sequence DROP NOT NULL")
    hot.load(1, 4)
    hot.load(1, 4, tables=["token_transfers_stream_v1"])
    hot.execute("UPDATE token_transfers_stream_v1 SET ledger_sequence = NULL WHERE ledger_sequence IN (2, 3)")
    state = flush(hot)
    assert state.is_completed(), state.message
    assert "NULL ledger column" in state.message and "token_transfers_stream_v1 (2 rows" in state.message
    assert "token_transfers_stream_v1 (2 rows" in _last_run_message(hot), "the run's state says it too"
    assert hot.execute("SELECT count(*) FROM token_transfers_stream_v1")[0][0] == 2, "they stay, and are counted"

    status = hot.run_cli("status")
    assert "STUCK: rows with a NULL ledger column" in status.stdout and "ledger_sequence IS NULL" in status.stdout
    code, body, metrics = _health_and_metrics(hot)
    assert code == 503 and any("NULL ledger" in r for r in body["reasons"]), body
    assert 'flusher_stuck_rows{reason="null_ledger",table="token_transfers_stream_v1"} 2.0' in metrics


def test_rows_while_the_ledgers_table_is_empty_are_not_nothing_to_flush(hot):
    hot.load(1, 6, tables=["trades_row_v1", "effects_row_v1"])  # the ingester wrote them; ledgers_row_v2 is empty
    state = flush(hot)
    assert state.is_completed()
    assert "ledgers_row_v2 is empty" in state.message and "trades_row_v1 (6 rows)" in state.message, state.message
    assert "effects_row_v1 (18 rows)" in state.message
    code, body, metrics = _health_and_metrics(hot)
    assert code == 503 and any("ledgers_row_v2 is empty" in r for r in body["reasons"]), body
    assert 'flusher_stuck_rows{reason="waiting_for_ledgers",table="trades_row_v1"} 6.0' in metrics
    status = hot.run_cli("status")
    assert "STUCK: ledgers_row_v2 is empty" in status.stdout

    hot.load(1, 6, tables=["ledgers_row_v2"])  # the ledgers arrive: everything moves, nothing is reported any more
    assert flush(hot).is_completed()
    code, body, _ = _health_and_metrics(hot)
    assert not [r for r in body["reasons"] if "empty" in r or "NULL" in r], body


def test_a_text_ledger_column_is_refused_for_that_table_only(hot):
    hot.config = write_config(hot, flush={"retries": 2, "retry_delay_seconds": 0})
    for schema in ("public", "audit"):
        hot.execute(f"ALTER TABLE {schema}.token_transfers_stream_v1 ALTER COLUMN ledger_sequence TYPE TEXT")
    hot.load(1, 12)
    hot.load(1, 12, tables=["token_transfers_stream_v1"])  # as text, '10' < '9': a string compare would move wrong rows
    state = flush(hot)
    assert state.is_failed()
    assert (
        "ledger column public.token_transfers_stream_v1.ledger_sequence has type VARCHAR, not an integer type"
        in state.message
    ), state.message
    assert "ALTER COLUMN ledger_sequence TYPE bigint" in state.message
    assert task_attempts(state, "token_transfers_stream_v1") == 1
    assert hot.execute("SELECT count(*) FROM token_transfers_stream_v1")[0][0] == 12, "its rows stay"
    assert all(hot.hot_count_at_or_below(t, 12) == 0 for t in ENABLED), "the other tables flush (C5)"
    hot.assert_exactly_once(ENABLED)


def test_go_style_maintenance_runs_right_after_every_nth_completed_flush(hot):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    # The Go service's section (every_n_flushes 6 there; 2 here so the test needs 3 flushes, not 7).
    hot.config = write_config(
        hot,
        maintenance={"enabled": True, "every_n_flushes": 2, "max_compacted_files": 200},
        ducklake={"data_inlining_row_limit": 0},
    )
    states = []
    for first in (1, 21, 41):
        hot.load(first, 20)
        states.append(flush(hot))
        assert states[-1].is_completed(), states[-1].message
    assert [r[0] for r in hot.execute("SELECT maintained FROM flusher_state.runs ORDER BY batch_id")] == [
        False,
        True,
        False,
    ], "the 2nd completed flush maintained; the count restarts after it"
    with get_client(sync_client=True) as client:
        keys = [
            {
                a.key
                for a in client.read_artifacts(
                    artifact_filter=ArtifactFilter(
                        flow_run_id=ArtifactFilterFlowRunId(any_=[s.state_details.flow_run_id])
                    )
                )
            }
            for s in states
        ]
    assert "bronze-maintenance-summary" in keys[1] and "bronze-maintenance-summary" not in keys[0] | keys[2]
    merged = hot.execute(
        "SELECT count(*) FROM bronze_meta.ducklake_data_file f JOIN bronze_meta.ducklake_table t USING (table_id) "
        "WHERE t.table_name = 'trades_row_v1' AND t.end_snapshot IS NULL AND f.end_snapshot IS NULL"
    )[0][0]
    assert merged == 2, "the first two flushes' files were merged into one; the third flush added one"
    hot.assert_exactly_once()


def test_a_table_typo_on_the_command_line_is_a_config_error_and_creates_no_flow_run(hot):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        before = len(client.read_flow_runs(limit=200))
    result = hot.run_cli("flush", "--tables", "ledgers_row_v2,trades_row_v9")
    assert result.returncode == 2, result.stderr
    assert "trades_row_v9" in result.stderr and "known tables: ledgers_row_v2, " in result.stderr
    assert all(name in result.stderr for name in registry())
    with get_client(sync_client=True) as client:
        assert len(client.read_flow_runs(limit=200)) == before, "no flow run, so no failed run and no alert"
