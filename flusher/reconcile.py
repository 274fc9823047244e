"""Matching hot rows to rows another flusher already put in the lake (a takeover), by natural key or by all columns.

The Go postgres-ducklake-flusher deletes only up to min(its watermark, a downstream checkpoint), so when it is
stopped the hot buffer still holds rows it already copied to the lake, next to late rows it never saw. A takeover
flush copies only the hot rows the lake lacks and deletes them all. Values are compared after the conversion the flush
applies (the hot side is the flush's own select list), so a row matches the lake row it would have become.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import psycopg

from flusher.lake import COMMIT_AUTHOR, LakeSession
from flusher.quoting import quote_ident
from flusher.registry import TableSpec

_ROW_NUMBER = "__takeover_copy"  # the n-th identical row, for multiset matching


@dataclass(frozen=True)
class Reconcile:
    """How one table's hot rows are matched to lake rows.

    key: the natural key (its values identify a row); empty when the table has none, then every comparable
    column is compared and identical rows count one by one (two identical hot rows against one in the lake: one
    is missing). comparable: the lake columns rows written before this flusher hold values in (those it added
    later are NULL in every older row, so they cannot take part).
    """

    key: tuple[str, ...]
    comparable: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.key or self.comparable


def primary_key(conn: psycopg.Connection, schema: str, table: str) -> list[str]:
    """The hot table's primary-key columns in key order, from pg_index (empty when it has none)."""
    rows = conn.execute(
        "SELECT a.attname FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE n.nspname = %s AND c.relname = %s AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)",
        (schema, table),
    ).fetchall()
    return [r[0] for r in rows]


def columns_before_us(session: LakeSession, cur: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """Current top-level columns of the lake table that no commit of this flusher added.

    Rows written by another flusher hold values only in those; a column this flusher added (ALTER TABLE ADD COLUMN
    in its labelled commit, possibly in an earlier, interrupted takeover) is NULL in all of them.
    """
    rows = cur.execute(
        f"SELECT c.column_name FROM {session.metadata('ducklake_column')} c "
        f"JOIN {session.metadata('ducklake_table')} t ON t.table_id = c.table_id AND t.end_snapshot IS NULL "
        f"JOIN {session.metadata('ducklake_schema')} s ON s.schema_id = t.schema_id AND s.end_snapshot IS NULL "
        f"LEFT JOIN {session.metadata('ducklake_snapshot_changes')} ch ON ch.snapshot_id = c.begin_snapshot "
        "WHERE s.schema_name = ? AND t.table_name = ? AND c.end_snapshot IS NULL AND c.parent_column IS NULL "
        "AND ch.author IS DISTINCT FROM ? ORDER BY c.column_order",
        [session.schema, table, COMMIT_AUTHOR],
    ).fetchall()
    return [r[0] for r in rows]


def plan_reconcile(spec: TableSpec, pk: list[str], lake_columns_before_us: list[str], names: list[str]) -> Reconcile:
    """The matching for one table: its natural key if every key column can be compared, else all columns."""
    comparable = tuple(n for n in names if n in set(lake_columns_before_us))
    key = tuple(spec.natural_key) if spec.natural_key is not None else tuple(pk)
    if key and not set(key) <= set(comparable):
        key = ()  # a key column the older rows lack cannot identify them; fall back to every shared column
    return Reconcile(key, comparable)


def lake_range(spec: TableSpec, reconcile: Reconcile, alias: str = "") -> str:
    """A filter on the lake side by ledger, when the match columns include the ledger column (file pruning)."""
    if spec.ledger_column not in reconcile.columns:
        return "true"
    return f"{alias}{quote_ident(spec.ledger_column)} BETWEEN ? AND ?"


def missing_rows_sql(
    spec: TableSpec, hot_table: str, lake_table: str, select: list[str], reconcile: Reconcile, watermark: int, low: int
) -> tuple[str, list[int]]:
    """A query for the hot rows at or below the watermark that the lake lacks, as the flush would write them.

    `select` is the flush's column list (expressions aliased to lake column names); `low` the lowest hot ledger at
    or below the watermark, which bounds the lake scan.
    """
    ledger = quote_ident(spec.ledger_column)
    hot = f"SELECT {', '.join(select)} FROM {hot_table} WHERE {ledger} <= ?"
    bounded = spec.ledger_column in reconcile.columns
    lake_params = [low, watermark] if bounded else []
    on = " AND ".join(f"l.{quote_ident(c)} IS NOT DISTINCT FROM h.{quote_ident(c)}" for c in reconcile.columns)
    if reconcile.key:
        query = (
            f"SELECT h.* FROM ({hot}) h ANTI JOIN (SELECT {', '.join(map(quote_ident, reconcile.key))} "
            f"FROM {lake_table} WHERE {lake_range(spec, reconcile)}) l ON {on}"
        )
        return query, [watermark, *lake_params]
    if not reconcile.columns:  # nothing in common with the lake's older rows: every row is missing
        return hot, [watermark]
    part = ", ".join(map(quote_ident, reconcile.columns))
    n = quote_ident(_ROW_NUMBER)
    query = (
        f"SELECT h.* EXCLUDE ({n}) FROM (SELECT *, row_number() OVER (PARTITION BY {part}) AS {n} FROM ({hot})) h "
        f"ANTI JOIN (SELECT {part}, row_number() OVER (PARTITION BY {part}) AS {n} FROM {lake_table} "
        f"WHERE {lake_range(spec, reconcile)}) l ON {on} AND l.{n} = h.{n}"
    )
    return query, [watermark, *lake_params]


def lake_duplicates_sql(
    spec: TableSpec, lake_table: str, reconcile: Reconcile, watermark: int, low: int
) -> tuple[str, list[int]]:
    """Extra lake rows per natural key within the compared range (reported by a dry run, never changed)."""
    key = ", ".join(map(quote_ident, reconcile.key))
    params = [low, watermark] if spec.ledger_column in reconcile.key else []
    query = (
        f"SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM {lake_table} "
        f"WHERE {lake_range(spec, reconcile)} GROUP BY {key} HAVING count(*) > 1)"
    )
    return query, params


def reconcile_for(session: LakeSession, conn: psycopg.Connection, spec: TableSpec, hot_names: list[str]) -> Reconcile:
    """Look up a table's key (pg_index unless schema/tables.yaml names one) and the lake's older columns."""
    pk = primary_key(conn, session.settings.postgres.schema_name, spec.name) if spec.natural_key is None else []
    with session.cursor() as cur:
        before = columns_before_us(session, cur, spec.name)
    return plan_reconcile(spec, pk, before, hot_names)
