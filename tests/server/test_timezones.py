"""TIMESTAMPTZ lands as its exact UTC wall time whatever the host's or the hot server's time zone (issue 10, defect 1).

The flush runs in a child process started under TZ=<zone>: DuckDB's ICU reads the host zone once per process, so
setting os.environ["TZ"] in the test process would prove nothing.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from psycopg import sql

from flusher.lake import LakeSession
from tests.helpers import flush, write_config

pytestmark = pytest.mark.usefixtures("prefect_api")

# A DST zone (America/New_York), a half-hour offset (Asia/Kolkata), and UTC.
ZONES = ["UTC", "America/New_York", "Asia/Kolkata"]

# ledger -> closed_at as UTC wall time: both sides of the US clock changes of 2025 (2025-03-09 07:00 UTC and
# 2025-11-02 06:00 UTC), sub-second values, a date change in UTC but not in New York, and one before the epoch.
EXPECTED = {
    1: datetime(2025, 3, 9, 6, 59, 59, 999999),
    2: datetime(2025, 3, 9, 7, 0, 0, 1),
    3: datetime(2025, 3, 9, 12, 30, 0, 500000),
    4: datetime(2025, 11, 2, 5, 59, 59, 123456),
    5: datetime(2025, 11, 2, 6, 0, 0),
    6: datetime(2025, 11, 2, 6, 30, 0, 654321),
    7: datetime(2025, 1, 1, 0, 0, 0, 1),
    8: datetime(1969, 12, 31, 23, 59, 59, 500000),
}
TABLES = ["ledgers_row_v2", "trades_row_v1"]


def _load_known_times(hot) -> None:
    """Ledgers 1..8 whose TIMESTAMPTZ columns hold the EXPECTED instants (written as UTC literals)."""
    hot.load(1, len(EXPECTED), tables=TABLES)
    for ledger, wall in EXPECTED.items():
        literal = wall.isoformat(sep=" ") + "+00"
        hot.execute("UPDATE ledgers_row_v2 SET closed_at = %s::timestamptz WHERE sequence = %s", (literal, ledger))
        hot.execute(
            "UPDATE trades_row_v1 SET trade_timestamp = %s::timestamptz, created_at = %s::timestamptz "
            "WHERE ledger_sequence = %s",
            (literal, literal, ledger),
        )


def _lake_times(hot) -> dict[str, dict[int, set]]:
    with LakeSession(hot.settings(), attach_hot=False) as lake:
        cur = lake.cursor()
        ledgers = cur.execute(f"SELECT sequence, closed_at FROM {lake.table('ledgers_row_v2')}").fetchall()
        trades = cur.execute(
            f"SELECT ledger_sequence, trade_timestamp, created_at FROM {lake.table('trades_row_v1')}"
        ).fetchall()
    out: dict[str, dict[int, set]] = {"ledgers_row_v2": {}, "trades_row_v1": {}}
    for ledger, closed in ledgers:
        out["ledgers_row_v2"].setdefault(ledger, set()).add(closed)
    for ledger, traded, created in trades:
        out["trades_row_v1"].setdefault(ledger, set()).update({traded, created})
    return out


def _assert_exact_utc(hot) -> None:
    got = _lake_times(hot)
    expected = {ledger: {wall} for ledger, wall in EXPECTED.items()}
    for table in TABLES:
        assert got[table] == expected, f"{table}: lake values are not the UTC wall times"
    hot.assert_exactly_once(TABLES)
    assert all(hot.hot_count_at_or_below(t, len(EXPECTED)) == 0 for t in TABLES)


@pytest.mark.parametrize("zone", ZONES)
def test_timestamptz_lands_as_utc_wall_time_under_any_host_zone(hot, zone):
    _load_known_times(hot)
    done = hot.run_cli("flush", "--tables", ",".join(TABLES), env={"TZ": zone})
    assert done.returncode == 0, done.stdout + done.stderr
    _assert_exact_utc(hot)


@pytest.mark.parametrize("zone", ZONES)
def test_the_hot_servers_own_time_zone_is_irrelevant(hot, zone):
    # A 12:45 offset with DST of its own, for every new session of the hot (and catalog) database.
    hot.execute(sql.SQL("ALTER DATABASE {} SET TimeZone = 'Pacific/Chatham'").format(sql.Identifier(hot.database)))
    _load_known_times(hot)
    done = hot.run_cli("flush", "--tables", ",".join(TABLES), env={"TZ": zone})
    assert done.returncode == 0, done.stdout + done.stderr
    _assert_exact_utc(hot)


def test_maintenance_rewrites_keep_utc_values_under_a_non_utc_host_zone(hot):
    """Merging small files rewrites the rows; run under New York time, the values must not move."""
    hot.config = write_config(hot, ducklake={"data_inlining_row_limit": 0})
    _load_known_times(hot)
    # One flush per ledger: eight small files per table for the merge to rewrite. In-process (a child per flush costs
    # seconds each): the flush under New York time is the tests above; here the rewrite is under test.
    for _ledger in EXPECTED:
        assert flush(hot, tables=TABLES, max_ledgers_per_run=1).is_completed()
    done = hot.run_cli("maintain", env={"TZ": "America/New_York"})
    assert done.returncode == 0, done.stdout + done.stderr
    with LakeSession(hot.settings(), attach_hot=False) as lake:
        files = (
            lake.cursor()
            .execute(
                "SELECT count(*) FROM ducklake_list_files(?, ?, schema => ?)",
                [lake.lake, "ledgers_row_v2", lake.schema],
            )
            .fetchone()[0]
        )
    assert files == 1, "maintenance did not merge the files, so it proved nothing"
    _assert_exact_utc(hot)
    assert flush(hot, tables=TABLES).is_completed()  # an in-process flush (the test's own zone) keeps them too
    _assert_exact_utc(hot)
