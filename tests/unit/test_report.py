"""RunReport.build (flusher/report.py): each table's line from its flush and delete outcome; pure, no servers."""

from __future__ import annotations

from flusher.hot import Mark
from flusher.registry import registry
from flusher.report import DeleteOutcome, FlushOutcome, RunReport
from flusher.statuses import LineStatus

MARK = Mark(batch_id=7, watermark=100, snapshot="00000003-0000001B-1", hot_min=90, hot_max=120, previous_watermark=89)
NAMES = [
    "ledgers_row_v2",
    "transactions_row_v2",
    "operations_row_v2",
    "effects_row_v1",
    "trades_row_v1",
    "accounts_snapshot_v1",
]


def _flushed(table: str, rows: int, already: int = 0) -> FlushOutcome:
    return FlushOutcome(table, rows, 11 if rows else None, 0.5, 0, [], already)


def _report() -> RunReport:
    specs = [registry()[name] for name in NAMES]
    flushes = {
        "ledgers_row_v2": (_flushed("ledgers_row_v2", 10), None),
        "transactions_row_v2": (_flushed("transactions_row_v2", 0), None),
        "operations_row_v2": (None, "flushing operations_row_v2 failed: boom"),
        "effects_row_v1": (_flushed("effects_row_v1", 5), None),
        "trades_row_v1": (_flushed("trades_row_v1", 0, already=4), None),  # takeover: only in the lake already
        "accounts_snapshot_v1": (_flushed("accounts_snapshot_v1", 2), None),
    }
    deletes = {
        "ledgers_row_v2": (DeleteOutcome("ledgers_row_v2", 10, 0.25), None),
        "effects_row_v1": (DeleteOutcome("effects_row_v1", 0, 0.1, deferred="SerializationFailure: x"), None),
        "trades_row_v1": (DeleteOutcome("trades_row_v1", 4, 0.2), None),
        "accounts_snapshot_v1": (None, "connection lost"),
    }
    return RunReport.build(MARK, specs, flushes, deletes)


def test_each_table_gets_the_status_of_its_flush_and_delete():
    report = _report()
    assert [(line.table, line.status) for line in report.lines] == [
        ("ledgers_row_v2", LineStatus.FLUSHED),
        ("transactions_row_v2", LineStatus.EMPTY),
        ("operations_row_v2", LineStatus.FAILED),
        ("effects_row_v1", LineStatus.DEFERRED),
        ("trades_row_v1", LineStatus.FLUSHED),  # nothing copied, but rows the lake held were deleted
        ("accounts_snapshot_v1", LineStatus.FAILED),
    ]
    lines = {line.table: line for line in report.lines}
    assert lines["operations_row_v2"].error == "flushing operations_row_v2 failed: boom"
    assert lines["accounts_snapshot_v1"].error == "delete failed: connection lost"
    assert lines["effects_row_v1"].error == "delete left for the next run: SerializationFailure: x"
    assert (lines["ledgers_row_v2"].rows_deleted, lines["ledgers_row_v2"].delete_seconds) == (10, 0.25)
    assert lines["ledgers_row_v2"].lake_snapshot_id == 11


def test_totals_and_headline_count_only_what_moved():
    report = _report()
    assert [line.table for line in report.failed_tables] == ["operations_row_v2", "accounts_snapshot_v1"]
    assert report.rows_flushed == 10, "deferred and failed tables' rows are not counted as flushed"
    assert report.rows_deleted == 14
    assert report.headline() == (
        "FAILED: operations_row_v2: flushing operations_row_v2 failed: boom; accounts_snapshot_v1: delete failed: "
        "connection lost | watermark 100: flushed 10 rows, deleted 14, 4/6 tables ok"
    ), "failures first: the UI shows the start of a state message"


def test_artifact_rows_carry_the_plain_status_strings():
    rows = _report().rows()
    assert [row["status"] for row in rows] == ["flushed", "empty", "failed", "deferred", "flushed", "failed"]
    assert all(type(row["status"]) is str for row in rows), "artifacts and JSON get plain strings"


def _one_table_flushed_and_deleted() -> RunReport:
    flushed = {"ledgers_row_v2": (_flushed("ledgers_row_v2", 3), None)}
    deleted = {"ledgers_row_v2": (DeleteOutcome("ledgers_row_v2", 3, 0.1), None)}
    return RunReport.build(MARK, [registry()["ledgers_row_v2"]], flushed, deleted)


def test_a_run_with_every_table_flushed_or_empty_has_no_failures():
    report = _one_table_flushed_and_deleted()
    assert not report.failed_tables and all(line.status.ok for line in report.lines)
    assert report.headline() == "watermark 100: flushed 3 rows, deleted 3, 1/1 tables ok"


def test_a_checkpoint_failure_leads_the_headline_too():
    report = _one_table_flushed_and_deleted()
    report.checkpoint_error = "could not advance cold_flusher_checkpoint: timeout"
    assert report.headline().startswith("FAILED: could not advance cold_flusher_checkpoint: timeout | watermark 100")
