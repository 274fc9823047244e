"""Crash anywhere (C3): the flush process is SIGKILLed at a named point; the next run converges to exactly once."""

from __future__ import annotations

import signal

import pytest

from tests.helpers import ENABLED, write_config

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]

KILL_POINTS = [
    "after_mark",  # lock held, snapshot pinned, nothing written
    "before_lake_commit:operations_row_v2",  # lake transaction written, not committed
    "after_lake_commit:transactions_row_v2",  # committed in the lake, not deleted in PostgreSQL
    "after_lake_commit:effects_row_v1",  # in the middle of the flush tasks: some tables committed, some running
    "in_delete:effects_row_v1",  # DELETE executed, its transaction not committed
    "after_delete:ledgers_row_v2",  # a delete committed, others pending, state not reconciled
    "before_vacuum",  # every table confirmed
]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_then_rerun_converges(hot, point):
    if point == "before_vacuum":
        hot.config = write_config(hot, vacuum={"every_n_flushes": 1})
    hot.load(1, 25)
    killed = hot.run_cli("flush", failpoints=f"{point}=kill")
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    hot.assert_exactly_once(unconfirmed_ok=True)  # right after the crash: nothing lost, nothing twice in the lake
    hot.load(26, 5)  # the ingester kept going while the flusher was down
    again = hot.run_cli("flush")
    assert again.returncode == 0, again.stdout + again.stderr
    counts = hot.assert_exactly_once()
    assert counts["ledgers_row_v2"] == 30
    for table in ENABLED:
        assert hot.hot_count_at_or_below(table, 30) == 0, f"{table} still has flushed ledgers in PostgreSQL"


def test_a_failure_after_the_lake_commit_is_retried_then_undone_by_the_next_run(hot):
    hot.load(1, 10)
    failed = hot.run_cli("flush", failpoints="after_lake_commit:trades_row_v1=raise")
    assert failed.returncode == 1
    assert "trades_row_v1" in failed.stderr and "injected fault" in failed.stderr
    assert hot.hot_count_at_or_below("trades_row_v1", 10) == 10, "a failed table keeps its rows in PostgreSQL"
    assert hot.hot_count_at_or_below("effects_row_v1", 10) == 0, "the other tables are flushed and deleted"
    hot.assert_exactly_once(unconfirmed_ok=True)  # both attempts committed, the second undid the first
    ok = hot.run_cli("flush")
    assert ok.returncode == 0, ok.stderr
    assert hot.assert_exactly_once()["trades_row_v1"] == 10


def test_repeated_crashes_in_a_row_still_converge(hot):
    hot.load(1, 10)
    for point in ("after_lake_commit:ledgers_row_v2", "in_delete:ledgers_row_v2", "after_lake_commit:ledgers_row_v2"):
        assert hot.run_cli("flush", failpoints=f"{point}=kill").returncode == -signal.SIGKILL
        hot.load(hot.execute("SELECT max(sequence) FROM ledgers_row_v2")[0][0] + 1, 2)
    assert hot.run_cli("flush").returncode == 0
    assert hot.assert_exactly_once()["ledgers_row_v2"] == 16
