"""End to end on real PostgreSQL, real DuckLake and a real Prefect API: what a flush moves, and how exactly."""

from __future__ import annotations

import json
from datetime import UTC

import pytest
from psycopg import sql

from flusher.lake import LakeSession
from flusher.quoting import quote_ident
from tests.helpers import ENABLED, LEDGER_COLUMN, flush

pytestmark = pytest.mark.usefixtures("prefect_api")


def _lake_rows(env, table: str, columns: list[str], key: list[str]) -> list[tuple]:
    with LakeSession(env.settings(), attach_hot=False) as lake:
        order = ", ".join(map(quote_ident, key))
        return (
            lake.cursor()
            .execute(f"SELECT {', '.join(map(quote_ident, columns))} FROM {lake.table(table)} ORDER BY {order}")
            .fetchall()
        )


def _same(hot_value, lake_value) -> bool:
    """The lake holds the hot value: UTC wall time for timestamptz, JSON text for arrays and jsonb."""
    if hasattr(hot_value, "tzinfo") and hot_value.tzinfo is not None:
        return hot_value.astimezone(UTC).replace(tzinfo=None) == lake_value
    if isinstance(hot_value, list):
        return json.dumps(hot_value, separators=(",", ":"), ensure_ascii=False) == lake_value
    if isinstance(hot_value, dict):
        return json.loads(lake_value) == hot_value
    return hot_value == lake_value


def test_flush_moves_every_row_bit_for_bit_and_deletes_exactly_those(hot):
    hot.load(1001, 40)
    hot.load(1041, 5, tables=[t for t in ENABLED if t != "ledgers_row_v2"])  # above the watermark: must stay
    originals = {}
    for table in ENABLED:
        key = hot.primary_key(table)
        columns = [
            r[0]
            for r in hot.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s "
                "ORDER BY ordinal_position",
                (table,),
            )
        ]
        rows = hot.execute(
            sql.SQL("SELECT {} FROM {} WHERE {} <= 1040 ORDER BY {}").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.Identifier(table),
                sql.Identifier(LEDGER_COLUMN[table]),
                sql.SQL(", ").join(map(sql.Identifier, key)),
            )
        )
        originals[table] = (columns, key, rows)

    state = flush(hot)
    assert state.is_completed(), state.message

    for table, (columns, key, rows) in originals.items():
        lake = _lake_rows(hot, table, columns, key)
        assert len(lake) == len(rows) > 0, table
        nulls = 0
        for hot_row, lake_row in zip(rows, lake, strict=False):
            for column, h, lk in zip(columns, hot_row, lake_row, strict=False):
                nulls += h is None
                assert _same(h, lk), f"{table}.{column}: hot {h!r} became {lk!r}"
        assert nulls > 0, f"{table}: the data should exercise NULLs"
        assert hot.hot_count_at_or_below(table, 1040) == 0, f"{table}: rows <= watermark left in hot"
    above = hot.execute("SELECT count(*) FROM operations_row_v2 WHERE ledger_sequence > 1040")[0][0]
    assert above == 5 * 3, "rows above the watermark must stay in PostgreSQL"
    hot.assert_exactly_once()


def test_late_rows_for_flushed_ledgers_move_in_a_later_run(hot):
    hot.load(1, 20)
    assert flush(hot).is_completed()
    # A history loader writes one table at a time, for ledgers already flushed, with no ledgers_row_v2 rows.
    hot.load(5, 3, tables=["effects_row_v1"], first_row=100)
    hot.load(2, 2, tables=["trades_row_v1"], first_row=100)
    state = flush(hot)
    assert state.is_completed(), state.message
    assert hot.hot_count_at_or_below("effects_row_v1", 20) == 0
    counts = hot.assert_exactly_once()
    assert counts["effects_row_v1"] == 20 * 3 + 3 * 3


def test_empty_hot_buffer_is_a_quiet_success(hot):
    state = flush(hot)
    assert state.is_completed()
    assert "nothing to flush" in state.message


def test_columns_are_matched_by_name_and_new_hot_columns_reach_the_lake(hot):
    hot.load(1, 5)
    assert flush(hot).is_completed()
    # A column appended on the hot side, after the lake table exists, and an existing one re-added at the end.
    hot.execute("ALTER TABLE trades_row_v1 ADD COLUMN rebate_note TEXT")
    hot.execute("ALTER TABLE audit.trades_row_v1 ADD COLUMN rebate_note TEXT")
    hot.execute("ALTER TABLE trades_row_v1 DROP COLUMN price; ALTER TABLE trades_row_v1 ADD COLUMN price TEXT")
    hot.execute(
        "ALTER TABLE audit.trades_row_v1 DROP COLUMN price; ALTER TABLE audit.trades_row_v1 ADD COLUMN price TEXT"
    )
    hot.load(6, 3)
    hot.execute("UPDATE trades_row_v1 SET rebate_note = 'note-' || ledger_sequence, price = 'p-' || ledger_sequence")
    state = flush(hot)
    assert state.is_completed(), state.message
    rows = _lake_rows(hot, "trades_row_v1", ["ledger_sequence", "price", "rebate_note"], ["ledger_sequence"])
    assert [r for r in rows if r[0] >= 6] == [(s, f"p-{s}", f"note-{s}") for s in (6, 7, 8)]
    assert all(r[2] is None for r in rows if r[0] < 6), "older lake rows have no value for the new column"
    hot.assert_exactly_once()


def test_dry_run_changes_nothing(hot):
    hot.load(1, 10)
    state = flush(hot, dry_run=True)
    assert state.is_completed()
    assert "would flush" in state.message
    assert hot.hot_count_at_or_below("ledgers_row_v2", 10) == 10
    assert sum(sum(c.values()) for c in hot.lake_keys(ENABLED).values()) == 0


def test_table_subset_and_ledger_cap_move_the_backlog_in_chunks(hot):
    hot.load(1, 30)
    state = flush(hot, max_ledgers_per_run=10)
    assert state.is_completed(), state.message
    assert hot.execute("SELECT min(sequence) FROM ledgers_row_v2")[0][0] == 11
    state = flush(hot, tables=["ledgers_row_v2", "trades_row_v1"], max_ledgers_per_run=10)
    assert state.is_completed(), state.message
    assert hot.execute("SELECT min(sequence) FROM ledgers_row_v2")[0][0] == 21
    assert hot.execute("SELECT min(ledger_sequence) FROM effects_row_v1")[0][0] == 11
    assert flush(hot).is_completed()
    hot.assert_exactly_once()


def test_vacuum_runs_every_nth_completed_flush_counted_in_postgresql(hot):
    # every_n_flushes is 2 in the test config; each flow run is a new process-independent count from the state.
    for first in (1, 11, 21):
        hot.load(first, 10)
        assert flush(hot).is_completed()
    vacuumed = [v for (v,) in hot.execute("SELECT vacuumed FROM flusher_state.runs ORDER BY batch_id")]
    assert vacuumed == [False, True, False]
    last = hot.execute("SELECT last_autovacuum, last_vacuum FROM pg_stat_user_tables WHERE relname = 'ledgers_row_v2'")
    assert last[0][1] is not None, "VACUUM really ran on the hot table"


def test_every_task_run_of_a_run_lists_inputs_the_prefect_ui_can_render(hot):
    """Prefect's UI fails on a task input of type flow_run ("Invalid TaskInputResponse") and then lists no task runs:
    the vacuum task's inputs were linked to the delete subflow's result."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    states = []
    for first in (1, 11):  # every_n_flushes is 2: the second run vacuums
        hot.load(first, 10)
        states.append(flush(hot))
    assert all(state.is_completed() for state in states)
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[states[-1].state_details.flow_run_id]))
        )
    assert "vacuum-analyze" in {run.name.rsplit("-", 1)[0] for run in runs}
    for run in runs:
        kinds = {type(item).__name__ for inputs in run.task_inputs.values() for item in inputs}
        assert not {"FlowRunResult"} & kinds, f"{run.name}: inputs {run.task_inputs}"
