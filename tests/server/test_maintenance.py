"""bronze-maintenance: compaction and expiry that never lose a row, a young snapshot, or an undo a flush needs."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from flusher.flows.maintenance import bronze_maintenance
from flusher.lake import LakeSession
from tests.helpers import flush, write_config

pytestmark = pytest.mark.usefixtures("prefect_api")

TABLES = ["ledgers_row_v2", "transactions_row_v2", "trades_row_v1"]


def _maintain(hot, **params):
    return bronze_maintenance(config_path=str(hot.config), return_state=True, **params)


def _small_flushes(hot, flushes: int, ledgers: int = 2) -> None:
    """`flushes` flow runs of `ledgers` new ledgers each, after those already loaded."""
    first = (hot.execute("SELECT max(sequence) FROM audit.ledgers_row_v2")[0][0] or 0) + 1
    for i in range(flushes):
        hot.load(first + i * ledgers, ledgers, tables=TABLES)
        state = flush(hot, tables=TABLES)
        assert state.is_completed(), state.message


def _live_files(hot) -> dict[str, int]:
    with LakeSession(hot.settings(), attach_hot=False) as lake:
        cur = lake.cursor()
        return {
            t: cur.execute(
                "SELECT count(*) FROM ducklake_list_files(?, ?, schema => ?)", [lake.lake, t, lake.schema]
            ).fetchone()[0]
            for t in TABLES
        }


def _count_at(hot, table: str, version: int) -> int:
    with LakeSession(hot.settings(), attach_hot=False) as lake:
        return (
            lake.cursor()
            .execute(f"SELECT count(*) FROM {lake.table(table)} AT (VERSION => ?)", [version])
            .fetchone()[0]
        )


def _snapshots(hot) -> list[int]:
    return [r[0] for r in hot.execute("SELECT snapshot_id FROM bronze_meta.ducklake_snapshot ORDER BY 1")]


def _age_snapshots(hot, up_to: int, days: int = 30) -> None:
    """Make snapshots <= up_to look `days` old (the test cannot wait a week for the retention to pass)."""
    hot.execute(
        "UPDATE bronze_meta.ducklake_snapshot SET snapshot_time = snapshot_time - make_interval(days => %s) "
        "WHERE snapshot_id <= %s",
        (days, up_to),
    )


def _parquet_files(hot) -> int:
    return sum(1 for _ in Path(hot.settings().ducklake.data_path).rglob("*.parquet"))


@pytest.mark.slow
def test_maintenance_compacts_many_small_flushes_and_keeps_every_row_and_young_history(hot):
    hot.config = write_config(hot, ducklake={"data_inlining_row_limit": 0}, maintenance={"file_cleanup_age_hours": 0})
    _small_flushes(hot, 6)
    old = _snapshots(hot)[-1]
    _age_snapshots(hot, old)  # the first 6 flushes are past the 7-day retention
    _small_flushes(hot, 4)  # ... the last 4 are not
    young = [s for s in _snapshots(hot) if s > old]
    rows_at_young = {v: _count_at(hot, "trades_row_v1", v) for v in young}
    before_files, before_disk = _live_files(hot), _parquet_files(hot)
    assert all(n == 10 for n in before_files.values()), before_files

    state = _maintain(hot)
    assert state.is_completed(), state.message
    after = _live_files(hot)
    assert all(after[t] < before_files[t] for t in TABLES), (before_files, after)
    assert all(after[t] == 1 for t in TABLES), after  # ledgers 1..20 are one ledger_range partition
    assert hot.assert_exactly_once(TABLES)["ledgers_row_v2"] == 20
    assert set(young) <= set(_snapshots(hot)), "a snapshot younger than the retention was expired"
    assert {v: _count_at(hot, "trades_row_v1", v) for v in young} == rows_at_young, "time travel changed"
    with pytest.raises(duckdb.Error, match="No snapshot found"):
        _count_at(hot, "trades_row_v1", old)  # past the retention: expired
    print(
        f"live files per table {before_files} -> {after}; parquet on disk {before_disk} -> {_parquet_files(hot)}; "
        f"{state.message}"
    )

    # Once the merge itself is past the retention, the small files it replaced are freed and deleted.
    _age_snapshots(hot, _snapshots(hot)[-1])
    state = _maintain(hot)
    assert state.is_completed(), state.message
    assert _parquet_files(hot) == sum(_live_files(hot).values()) == len(TABLES), state.message
    assert hot.assert_exactly_once(TABLES)["trades_row_v1"] == 20


def test_maintenance_refuses_while_a_lake_commit_awaits_its_delete_and_runs_after_the_next_flush(hot, monkeypatch):
    hot.load(1, 4, tables=TABLES)
    monkeypatch.setenv("FLUSHER_FAILPOINTS", "after_lake_commit:trades_row_v1=raise")
    assert flush(hot, tables=TABLES).is_failed()  # committed in the lake, never deleted from PostgreSQL
    monkeypatch.delenv("FLUSHER_FAILPOINTS")
    snapshots = _snapshots(hot)

    state = _maintain(hot)
    assert state.is_failed()
    assert "refused" in state.message and "trades_row_v1" in state.message and "Run a flush" in state.message
    assert _snapshots(hot) == snapshots, "a refused run changed the lake"

    assert flush(hot, tables=TABLES).is_completed()
    state = _maintain(hot)
    assert state.is_completed(), state.message
    hot.assert_exactly_once(TABLES)


def test_dry_run_reports_and_changes_nothing(hot):
    hot.config = write_config(hot, ducklake={"data_inlining_row_limit": 0})
    _small_flushes(hot, 3)
    _age_snapshots(hot, _snapshots(hot)[-2])
    snapshots, files = _snapshots(hot), _live_files(hot)
    state = _maintain(hot, dry_run=True)
    assert state.is_completed(), state.message
    assert "dry run" in state.message and "would expire" in state.message
    assert _snapshots(hot) == snapshots and _live_files(hot) == files


def test_maintenance_skips_while_a_flush_holds_the_lock(hot):
    from flusher.hot import ControlSession, lock_key

    session = ControlSession(hot.settings().postgres)
    try:
        assert session.try_lock(lock_key("flusher_state"), 0)
        state = _maintain(hot)
        assert state.is_completed() and state.name == "Skipped", state
        assert "another flusher process" in state.message, "a session that did not name its run"
        session.announce("flush", "run-1")  # as mark_watermark does
        state = _maintain(hot)
        assert state.is_completed() and state.name == "Skipped", state
        assert state.message.startswith("another flush is running (flow run run-1, PostgreSQL backend pid ")
    finally:
        session.close()


def test_maintenance_on_s3(hot, s3):
    prefix = hot.database
    hot.config = write_config(
        hot, ducklake=s3.ducklake(prefix, data_inlining_row_limit=0), maintenance={"file_cleanup_age_hours": 0}
    )
    _small_flushes(hot, 3)
    _age_snapshots(hot, _snapshots(hot)[-1])
    state = _maintain(hot)
    assert state.is_completed(), state.message
    assert all(n == 1 for n in _live_files(hot).values())
    _age_snapshots(hot, _snapshots(hot)[-1])
    assert _maintain(hot).is_completed()
    parquet = [k for k in s3.keys(prefix) if k.endswith(".parquet")]
    assert len(parquet) == len(TABLES), parquet
    assert hot.assert_exactly_once(TABLES)["transactions_row_v2"] == 12
