"""Taking over from the Go flusher (issue 10, defect 2): rows it already put in the lake are not copied again.

The scenario, built with DuckDB the way the Go service writes (tests/go_era.py): it flushed ledgers 1..20 and
checkpointed 20, but a downstream consumer at 12 kept it from deleting 13..20 from the hot buffer. Then the
ingester replayed ledgers 3..4 (identical rows, already in the lake), wrote late rows for ledgers 5..7 (new keys,
not in the lake) and went on with 21..24. token_transfers_stream_v1 has no key: one of its hot rows at ledger 15
is there twice (identical), against one copy in the lake.
"""

from __future__ import annotations

import signal

import pytest

from tests import go_era
from tests.helpers import TEST_ROWS_PER_LEDGER, write_config

pytestmark = pytest.mark.usefixtures("prefect_api")

TABLES = [
    "ledgers_row_v2",
    "transactions_row_v2",
    "contract_events_stream_v1",
    "token_transfers_stream_v1",
    "contract_creations_v1",
]
LATE = ["transactions_row_v2", "contract_events_stream_v1", "token_transfers_stream_v1", "contract_creations_v1"]
CHECKPOINT, DOWNSTREAM, TOP = 20, 12, 24


def _rows(table: str) -> int:
    return TEST_ROWS_PER_LEDGER.get(table, 1)


def _go_era(hot, copied_twice: bool = False) -> None:
    hot.config = write_config(hot, flush={"tables": TABLES})
    hot.load(1, CHECKPOINT, TABLES)
    go_era.go_lake(hot, TABLES)
    go_era.go_flush(hot, TABLES, CHECKPOINT, DOWNSTREAM)  # hot keeps 13..20, already in the lake
    if copied_twice:  # the Go service died after a copy, before its checkpoint moved, and copied 13..14 again
        go_era.go_copy(hot, ["transactions_row_v2"], 14)
    hot.load(3, 2, TABLES)  # a replay of ledgers 3..4: identical rows, in the lake already
    hot.load(5, 3, LATE, first_row=100)  # late rows for old ledgers, never flushed
    hot.execute(
        "INSERT INTO token_transfers_stream_v1 SELECT * FROM token_transfers_stream_v1 "
        "WHERE ledger_sequence = 15 LIMIT 1"
    )  # two identical hot rows, one in the lake
    hot.load(CHECKPOINT + 1, TOP - CHECKPOINT, TABLES)


def _expected(table: str) -> tuple[int, int]:
    """(already in the lake, missing) at watermark TOP."""
    present = (CHECKPOINT - DOWNSTREAM + 2) * _rows(table)  # retained 13..20 and replayed 3..4
    missing = (TOP - CHECKPOINT) * _rows(table) + (3 * _rows(table) if table in LATE else 0)
    if table == "token_transfers_stream_v1":
        missing += 1  # the second identical row
    return present, missing


def _snapshot(hot):
    return go_era.lake_rows(hot, TABLES), {t: go_era.hot_rows(hot, t, at_or_below=TOP) for t in TABLES}


def test_dry_run_reports_what_a_takeover_would_do_and_writes_nothing(hot):
    _go_era(hot, copied_twice=True)
    lake_before, hot_before = _snapshot(hot)
    result = hot.run_cli("takeover", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "last_flushed_watermark = 20" in out and "A takeover is needed" in out
    assert "Lake tables with rows but no commit of this flusher" in out
    assert "holds 4 rows more than once by natural key" in out
    for table in TABLES:
        present, missing = _expected(table)
        line = next(line for line in out.splitlines() if line.startswith(table + " "))
        in_hot, in_lake, miss, dup = line.split()[1:5]
        assert (int(in_hot), int(in_lake), int(miss)) == (present + missing, present, missing), line
        lake_dup = {"token_transfers_stream_v1": "-", "transactions_row_v2": str(2 * _rows("transactions_row_v2"))}
        assert dup == lake_dup.get(table, "0"), line
    assert go_era.lake_rows(hot, TABLES) == lake_before
    assert {t: go_era.hot_rows(hot, t, at_or_below=TOP) for t in TABLES} == hot_before
    assert hot.execute("SELECT to_regnamespace('flusher_state')")[0][0] is None, "the dry run created the state"


def test_takeover_copies_only_what_the_lake_lacks_then_flushes_normally(hot):
    _go_era(hot)
    lake_before, hot_before = _snapshot(hot)
    result = hot.run_cli("takeover")
    assert result.returncode == 0, result.stdout + result.stderr
    go_era.assert_taken_over(hot, TABLES, lake_before, hot_before, TOP)
    for table in TABLES:
        present, missing = _expected(table)
        rows = hot.execute(
            "SELECT rows_flushed, rows_expected, rows_deleted, status FROM flusher_state.table_batches "
            "WHERE table_name = %s",
            (table,),
        )
        assert rows == [(missing, present + missing, present + missing, "confirmed")], (table, rows)
    assert hot.execute("SELECT adopted_how FROM flusher_state.state_identity") == [("takeover",)]
    # From here on the ordinary flush takes the new rows, and nothing of the old ones again.
    hot.load(TOP + 1, 3, TABLES)
    lake_mid, hot_mid = go_era.lake_rows(hot, TABLES), {t: go_era.hot_rows(hot, t, at_or_below=TOP + 3) for t in TABLES}
    again = hot.run_cli("flush")
    assert again.returncode == 0, again.stdout + again.stderr
    go_era.assert_taken_over(hot, TABLES, lake_mid, hot_mid, TOP + 3)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after_lake_commit:transactions_row_v2", "in_delete:token_transfers_stream_v1"])
def test_a_takeover_killed_anywhere_converges_when_run_again(hot, point):
    _go_era(hot)
    lake_before, hot_before = _snapshot(hot)
    killed = hot.run_cli("takeover", failpoints=f"{point}=kill")
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert hot.execute("SELECT adopted_at FROM flusher_state.state_identity") == [(None,)]
    again = hot.run_cli("takeover")
    assert again.returncode == 0, again.stdout + again.stderr
    go_era.assert_taken_over(hot, TABLES, lake_before, hot_before, TOP)
    assert hot.execute("SELECT adopted_how FROM flusher_state.state_identity") == [("takeover",)]
    # The columns the killed run added to the lake are NULL in the Go rows: the rerun still matches by the key.
    assert "matched by ledger_sequence, transaction_hash" in again.stdout + again.stderr


def test_dry_run_on_a_fresh_deployment_says_no_takeover_is_needed_and_creates_no_lake(hot):
    hot.load(1, 3)
    result = hot.run_cli("takeover", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No Go flusher checkpoint" in result.stdout and "a takeover is not needed" in result.stdout
    assert "No DuckLake catalog yet" in result.stdout
    assert hot.execute("SELECT to_regnamespace('bronze_meta'), to_regnamespace('flusher_state')")[0] == (None, None)
