"""The takeover's matching rules on plain DuckDB tables: by key, or all columns as a multiset, NULL-safe."""

from __future__ import annotations

import duckdb

from flusher.reconcile import Reconcile, missing_rows_sql, plan_reconcile
from flusher.registry import TableSpec

SPEC = TableSpec("t", "seq", "test", True)


def _db() -> duckdb.DuckDBPyConnection:
    db = duckdb.connect()
    db.execute("CREATE TABLE hot (seq BIGINT, k TEXT, v TEXT, extra INTEGER)")
    db.execute("CREATE TABLE lake (seq BIGINT, k TEXT, v TEXT)")
    return db


def _missing(db, reconcile: Reconcile, watermark: int = 10) -> list[tuple]:
    query, params = missing_rows_sql(SPEC, "hot", "lake", ["seq", "k", "v", "extra"], reconcile, watermark, 1)
    return sorted(db.execute(query, params).fetchall(), key=str)


def test_by_key_a_row_whose_key_is_in_the_lake_is_present_whatever_its_other_values():
    db = _db()
    db.execute("INSERT INTO hot VALUES (1, 'a', 'new', 1), (2, 'b', NULL, 2), (11, 'c', 'above', 3)")
    db.execute("INSERT INTO lake VALUES (1, 'a', 'old'), (3, 'b', NULL)")
    assert _missing(db, Reconcile(("seq", "k"), ("seq", "k", "v"))) == [(2, "b", None, 2)]


def test_without_key_identical_rows_count_one_by_one_and_nulls_match():
    db = _db()
    db.execute("INSERT INTO hot VALUES (1, 'a', NULL, 7), (1, 'a', NULL, 8), (1, 'a', NULL, 9), (2, 'b', 'x', 1)")
    db.execute("INSERT INTO lake VALUES (1, 'a', NULL), (2, 'b', 'x'), (2, 'b', 'x')")
    # three identical hot rows (on the columns the lake had) against one: two are missing; `extra` is not compared
    missing = _missing(db, Reconcile((), ("seq", "k", "v")))
    assert len(missing) == 2 and all(row[:3] == (1, "a", None) for row in missing)


def test_a_key_column_older_lake_rows_lack_falls_back_to_all_shared_columns():
    spec = TableSpec("t", "seq", "test", True)
    assert plan_reconcile(spec, ["seq", "extra"], ["seq", "k", "v"], ["seq", "k", "v", "extra"]) == Reconcile(
        (), ("seq", "k", "v")
    )
    declared = TableSpec("t", "seq", "test", True, natural_key=())
    assert plan_reconcile(declared, [], ["seq", "k"], ["seq", "k", "v"]).key == ()
