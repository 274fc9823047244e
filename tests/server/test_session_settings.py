"""The flusher's PostgreSQL sessions set what they need, whatever the database's or role's defaults (issue 10 #5).

Each test sets a hostile default with ALTER DATABASE on its own hot database (which also holds the lake catalog), never
ALTER ROLE on the shared superuser, and slows the flush with failpoints while sessions sit idle.
"""

from __future__ import annotations

import pytest
from psycopg import sql

from tests.helpers import ENABLED

pytestmark = pytest.mark.usefixtures("prefect_api")

TABLES = ["ledgers_row_v2", "transactions_row_v2", "trades_row_v1"]
# Idle for 3 s: the control session in its snapshot transaction right after the mark, and, before one table's lake
# commit, DuckDB's hot-scanner and catalog connections inside that table's transaction; after another table's commit
# the pool's connections sit idle between statements.
SLOW = "after_mark=sleep=3,before_lake_commit:transactions_row_v2=sleep=3,after_lake_commit:trades_row_v1=sleep=3"


def _set_database_default(hot, name: str, value: str) -> None:
    hot.execute(
        sql.SQL("ALTER DATABASE {} SET {} = {}").format(
            sql.Identifier(hot.database), sql.Identifier(name), sql.Literal(value)
        )
    )


def _reset_database_default(hot, name: str) -> None:
    hot.execute(sql.SQL("ALTER DATABASE {} RESET {}").format(sql.Identifier(hot.database), sql.Identifier(name)))


def _flush_completes_exactly_once(hot, setting: str, value: str) -> None:
    hot.load(1, 6, tables=TABLES)
    _set_database_default(hot, setting, value)
    done = hot.run_cli("flush", "--tables", ",".join(TABLES), failpoints=SLOW)
    _reset_database_default(hot, setting)  # for the test's own checks
    assert done.returncode == 0, done.stdout + done.stderr
    hot.assert_exactly_once(TABLES)
    assert all(hot.hot_count_at_or_below(t, 6) == 0 for t in TABLES), "the flush did not delete its rows from hot"


def test_idle_in_transaction_timeout_of_the_database_does_not_kill_the_snapshot_session(hot):
    _flush_completes_exactly_once(hot, "idle_in_transaction_session_timeout", "1s")


def test_idle_session_timeout_of_the_database_does_not_break_the_run(hot):
    _flush_completes_exactly_once(hot, "idle_session_timeout", "1s")


def test_a_tiny_statement_timeout_of_the_database_does_not_cut_the_copy(hot):
    # 1 ms: without its own statement_timeout, the scan, the catalog's statements and the deletes all fail.
    _flush_completes_exactly_once(hot, "statement_timeout", "1ms")


def test_status_works_under_the_same_hostile_defaults(hot):
    hot.load(1, 2, tables=TABLES)
    for setting, value in (
        ("idle_in_transaction_session_timeout", "1s"),
        ("statement_timeout", "1ms"),
        ("TimeZone", "Pacific/Chatham"),
    ):
        _set_database_default(hot, setting, value)
    done = hot.run_cli("status")
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(t in done.stdout for t in ENABLED)
