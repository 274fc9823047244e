"""The reader's SQL: one PostgreSQL statement for hot rows and read point, the lake split at it, quoting."""

from __future__ import annotations

import duckdb
import pytest

from flusher.reader import HOT_MARK, READ_POINT, READ_POINT_AHEAD, Reader, as_of_sql, hot_statement, view_sql


def test_the_hot_rows_and_the_read_point_come_from_one_statement():
    statement = hot_statement("public", "flusher_state", "effects_row_v1")
    assert statement.count("SELECT") == 3 and ";" not in statement
    assert 'AS MATERIALIZED (SELECT "flusher_state"."lake_read_point"(\'effects_row_v1\')' in statement
    assert 'FROM "public"."effects_row_v1" t' in statement
    assert "FROM rp LEFT JOIN h ON true" in statement  # an empty table still returns its read point


def test_names_are_quoted_in_both_dialects():
    statement = hot_statement('we"ird', "st'ate", "it's")
    assert '"we""ird"."it\'s"' in statement and "('it''s')" in statement and '"st\'ate"' in statement
    view = view_sql('v"1', statement, ['"a"'], '"lake"."bronze"."it\'s"', "lake")
    # The PostgreSQL statement is one DuckDB string literal: its quotes are doubled once more.
    assert "postgres_query('hot', 'WITH rp AS MATERIALIZED" in view
    assert "(''it''''s'')" in view
    assert view.startswith('CREATE OR REPLACE VIEW "v""1" AS ')


def test_the_view_splits_the_lake_at_the_read_point_and_refuses_one_it_cannot_see():
    view = view_sql("t", hot_statement("public", "s", "t"), ['"a"', '"b"'], '"lake"."bronze"."t"', "lake")
    assert "WITH h AS MATERIALIZED" in view  # one PostgreSQL statement per query, whatever refers to it
    assert f'SELECT "a", "b" FROM h WHERE {HOT_MARK} UNION ALL BY NAME SELECT * FROM "lake"."bronze"."t"' in view
    assert "WHERE snapshot_id <= (SELECT CASE WHEN rp > s.id" in view
    assert f"max({READ_POINT})" in view and '"lake".current_snapshot() s' in view
    assert f"error('{READ_POINT_AHEAD}')" in view


def test_a_table_not_in_the_lake_yet_is_its_hot_rows():
    view = view_sql("t", "SELECT 1", ['"a"'], None, "lake")
    assert "UNION" not in view and view.endswith(f'SELECT "a" FROM h WHERE {HOT_MARK}')


def test_the_guard_raises_only_when_the_read_point_is_ahead():
    """The guard's CASE, run by DuckDB on stand-ins for the one-statement result and current_snapshot()."""
    con = duckdb.connect()
    guard = (
        f"SELECT CASE WHEN rp > s.id THEN error('{READ_POINT_AHEAD}') ELSE rp END "
        "FROM (SELECT ?::BIGINT AS rp), (SELECT 7::BIGINT AS id) s"
    )
    assert con.execute(guard, [7]).fetchone()[0] == 7
    assert con.execute(guard, [-1]).fetchone()[0] == -1
    with pytest.raises(duckdb.Error, match=READ_POINT_AHEAD):
        con.execute(guard, [8]).fetchone()


def test_as_of_reads_a_fixed_version_at_or_below_the_ledger():
    assert as_of_sql('"l"."b"."t"', "ledger_sequence", 42, 17) == (
        'SELECT * FROM "l"."b"."t" AT (VERSION => 17) WHERE "ledger_sequence" <= 42'
    )
    with pytest.raises(ValueError):
        as_of_sql('"t"', "x", "1; DROP TABLE t", 1)  # type: ignore[arg-type]


class _FlakyCursor:
    """A cursor whose first `ahead` executions hit the read-point guard."""

    def __init__(self, calls: list[int], ahead: int, message: str = READ_POINT_AHEAD) -> None:
        self.calls, self.ahead, self.message = calls, ahead, message

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, statement, params=None):
        self.calls.append(1)
        if len(self.calls) <= self.ahead:
            raise duckdb.InvalidInputException(f"Invalid Input Error: {self.message}")
        return self

    def fetchall(self):
        return [(len(self.calls),)]


class _Session:
    def __init__(self, ahead: int, message: str = READ_POINT_AHEAD) -> None:
        self.calls: list[int] = []
        self.ahead, self.message = ahead, message

    def cursor(self):
        return _FlakyCursor(self.calls, self.ahead, self.message)


def test_query_reads_again_while_the_read_point_is_ahead_and_gives_up_after_its_attempts():
    assert Reader(_Session(ahead=2), "s", {}).query("SELECT 1") == [(3,)]
    with pytest.raises(duckdb.Error, match=READ_POINT_AHEAD):
        Reader(_Session(ahead=5), "s", {}).query("SELECT 1", attempts=3)
    other = _Session(ahead=1, message="some other error")
    with pytest.raises(duckdb.Error, match="some other error"):
        Reader(other, "s", {}).query("SELECT 1")
    assert len(other.calls) == 1, "only the guard's error is retried"
