"""flush.commit_groups: tables share lake commits, with the exactly-once and undo rules of per-table commits.

Crashes and faults before and after the shared commit, a run that switches mode after a crash, and a table that
fails inside the shared transaction (C5: the others are still flushed, table by table).
"""

from __future__ import annotations

import signal

import pytest

from tests.helpers import ENABLED, write_config

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


def _together(hot, groups: int = 1) -> None:
    hot.config = write_config(hot, flush={"commit_groups": groups})


def _lake_snapshots(hot, tables: list[str]) -> dict[str, set[int]]:
    """Per table, the lake snapshots its current rows were inserted by."""
    from flusher.lake import LakeSession

    with LakeSession(hot.settings(), attach_hot=False) as lake:
        cur = lake.cursor()
        return {
            t: {r[0] for r in cur.execute(f"SELECT DISTINCT snapshot_id FROM {lake.table(t)}").fetchall()}
            for t in tables
        }


def _assert_all_flushed(hot, upto: int) -> None:
    for table in ENABLED:
        assert hot.hot_count_at_or_below(table, upto) == 0, f"{table} still has flushed ledgers in PostgreSQL"


def test_every_table_lands_in_one_lake_snapshot(hot):
    _together(hot)
    hot.load(1, 10)
    done = hot.run_cli("flush")
    assert done.returncode == 0, done.stdout + done.stderr
    assert hot.assert_exactly_once()["ledgers_row_v2"] == 10
    _assert_all_flushed(hot, 10)
    snapshots = _lake_snapshots(hot, ENABLED)
    assert len(set().union(*snapshots.values())) == 1, snapshots  # one commit holds every table's rows
    # The read point recorded for each table is that snapshot, and verify (certificates included) agrees.
    points = {hot.execute("SELECT flusher_state.lake_read_point(%s)", (t,))[0][0] for t in ENABLED}
    assert points == set().union(*snapshots.values())
    verified = hot.run_cli("verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # Each table's seconds are its own part of the shared transaction, not the whole commit's.
    seconds = dict(hot.execute("SELECT table_name, flush_seconds FROM flusher_state.table_batches"))
    assert len(set(seconds.values())) > 1, seconds


@pytest.mark.parametrize(
    ("point", "groups", "then_groups"),
    [
        ("before_lake_commit:operations_row_v2", 1, 1),  # every table written, nothing committed
        ("after_lake_commit:transactions_row_v2", 1, 1),  # one snapshot committed, nothing recorded or deleted
        ("after_lake_commit:transactions_row_v2", 1, 0),  # ... and the next run commits table by table
        ("after_lake_commit:transactions_row_v2", 0, 2),  # per-table commits, then two shared ones
        ("after_lake_commit:effects_row_v1", 2, 2),  # two groups at once: one committed, the other may be running
        ("after_delete:ledgers_row_v2", 1, 1),  # a delete committed, others pending
    ],
)
def test_sigkill_around_the_shared_commit_then_rerun_converges(hot, point, groups, then_groups):
    _together(hot, groups)
    hot.load(1, 25)
    killed = hot.run_cli("flush", failpoints=f"{point}=kill")
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    hot.assert_exactly_once(unconfirmed_ok=True)
    hot.load(26, 5)  # the ingester kept going while the flusher was down
    _together(hot, then_groups)
    again = hot.run_cli("flush")
    assert again.returncode == 0, again.stdout + again.stderr
    assert hot.assert_exactly_once()["ledgers_row_v2"] == 30
    _assert_all_flushed(hot, 30)


def test_a_failure_after_the_shared_commit_is_undone_table_by_table(hot):
    """The shared snapshot committed, then the task failed: each table's fallback flush undoes its part of it."""
    _together(hot)
    hot.load(1, 10)
    failed = hot.run_cli("flush", failpoints="after_lake_commit:trades_row_v1=raise")
    assert failed.returncode == 1
    assert "one by one" in failed.stdout + failed.stderr
    assert hot.hot_count_at_or_below("trades_row_v1", 10) == 10, "the failing table keeps its rows in PostgreSQL"
    assert hot.hot_count_at_or_below("effects_row_v1", 10) == 0, "the others are flushed and deleted"
    hot.assert_exactly_once(unconfirmed_ok=True)  # nothing of the shared snapshot is left twice
    ok = hot.run_cli("flush")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert hot.assert_exactly_once()["trades_row_v1"] == 10


def test_a_table_failing_inside_a_shared_transaction_does_not_stop_the_others(hot):
    _together(hot, 2)  # the other group commits; this one falls back to one commit per table
    hot.load(1, 10)
    failed = hot.run_cli("flush", failpoints="before_lake_commit:trades_row_v1=raise")
    assert failed.returncode == 1
    assert "trades_row_v1" in failed.stderr and "injected fault" in failed.stderr
    assert hot.hot_count_at_or_below("trades_row_v1", 10) == 10
    assert hot.hot_count_at_or_below("effects_row_v1", 10) == 0
    assert hot.assert_exactly_once(unconfirmed_ok=True)
    ok = hot.run_cli("flush")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert hot.assert_exactly_once()["trades_row_v1"] == 10


def test_two_groups_commit_two_snapshots_that_split_the_tables(hot):
    _together(hot, 2)
    hot.load(1, 10)
    done = hot.run_cli("flush")
    assert done.returncode == 0, done.stdout + done.stderr
    hot.assert_exactly_once()
    _assert_all_flushed(hot, 10)
    snapshots = _lake_snapshots(hot, ENABLED)
    assert all(len(s) == 1 for s in snapshots.values()), snapshots
    assert len(set().union(*snapshots.values())) == 2, snapshots
