"""Rows no flush will move as things stand: found, counted and explained, so they never sit in PostgreSQL unseen.

Three kinds, each reported by the run summary, `status`, `/health` (a reason) and `/metrics`:
- a NULL ledger column: `col <= watermark` is never true for NULL, so the row is neither copied nor deleted, ever;
- rows waiting for their ledger: `ledgers_row_v2` is empty, so no watermark covers rows above the last one flushed;
- a known table left out of an explicit `flush.tables`: nothing flushes it (the Go service's forgotten-table incident).

Counting stays cheap: a NOT NULL ledger column needs no query at all; the others are `count(*)` with a WHERE on the
ledger column (its index, where the table has one), and callers that run often (a scrape) pass a cap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from flusher.hot import LedgerColumn, bounded_count, ledger_columns
from flusher.registry import WATERMARK_TABLE, TableSpec

NULL_LEDGER = "null_ledger"
WAITING_FOR_LEDGERS = "waiting_for_ledgers"
UNFLUSHED_TABLE = "unflushed_table"


@dataclass
class StuckRows:
    """Per kind, table -> rows (at least that many when counted with a cap)."""

    null_ledger: dict[str, int] = field(default_factory=dict)
    waiting_for_ledgers: dict[str, int] = field(default_factory=dict)
    unflushed: dict[str, int] = field(default_factory=dict)
    ledger_column: dict[str, str] = field(default_factory=dict)  # table -> its ledger column, for messages
    capped_at: int | None = None

    def __bool__(self) -> bool:
        return bool(self.null_ledger or self.waiting_for_ledgers or self.unflushed)

    def by_kind(self) -> dict[str, dict[str, int]]:
        return {
            NULL_LEDGER: self.null_ledger,
            WAITING_FOR_LEDGERS: self.waiting_for_ledgers,
            UNFLUSHED_TABLE: self.unflushed,
        }

    def _n(self, rows: int) -> str:
        return f"{rows}+" if self.capped_at is not None and rows >= self.capped_at else str(rows)

    def reasons(self) -> list[str]:
        """One sentence per kind: what is stuck, where, and what to do."""
        out = []
        if self.null_ledger:
            where = ", ".join(
                f"{t} ({self._n(n)} rows, {self.ledger_column.get(t, '?')} IS NULL)"
                for t, n in sorted(self.null_ledger.items())
            )
            out.append(
                f"rows with a NULL ledger column stay in PostgreSQL forever: {where}; set their ledger "
                "(or delete them) and make the column NOT NULL"
            )
        if self.waiting_for_ledgers:
            where = ", ".join(f"{t} ({self._n(n)} rows)" for t, n in sorted(self.waiting_for_ledgers.items()))
            out.append(
                f"{WATERMARK_TABLE} is empty, so no watermark covers rows in {where}; they move once "
                f"their ledgers reach {WATERMARK_TABLE} (check the ingester)"
            )
        if self.unflushed:
            where = ", ".join(f"{t} ({self._n(n)} rows)" for t, n in sorted(self.unflushed.items()))
            out.append(
                f"known tables with rows are not flushed (left out of flush.tables): {where}; add them to "
                "flush.tables (or remove the list to flush every known table), or their rows grow forever"
            )
        return out


def find_stuck_rows(
    conn: psycopg.Connection,
    schema: str,
    selected: list[TableSpec],
    unselected: list[TableSpec],
    flushed_through: int | None,
    cap: int | None = None,
) -> StuckRows:
    """Count stuck rows in the hot buffer, `cap` rows at most per table and kind (None: exact).

    `flushed_through` is the last watermark flushed (rows at or below it still move while the watermark table is
    empty, because a run then reuses it). Tables missing from the hot buffer are skipped.
    """
    columns = ledger_columns(conn, schema, {s.name: s.ledger_column for s in selected + unselected})
    stuck = StuckRows(ledger_column={t: c.column for t, c in columns.items()}, capped_at=cap)
    flushable = [columns[s.name] for s in selected if s.name in columns and columns[s.name].is_integer]
    for column in flushable:
        if not column.not_null:  # a NOT NULL column cannot hold one: no query at all
            nulls = bounded_count(conn, schema, column.table, _is_null(column), cap=cap)
            if nulls:
                stuck.null_ledger[column.table] = nulls
    if _watermark_table_empty(conn, schema):
        for column in flushable:
            waiting = _rows_above(conn, schema, column, flushed_through, cap)
            if waiting:
                stuck.waiting_for_ledgers[column.table] = waiting
    for spec in unselected:
        if spec.name in columns:
            rows = bounded_count(conn, schema, spec.name, cap=cap)
            if rows:
                stuck.unflushed[spec.name] = rows
    return stuck


def _is_null(column: LedgerColumn) -> sql.Composable:
    return sql.SQL("{} IS NULL").format(sql.Identifier(column.column))


def _rows_above(
    conn: psycopg.Connection, schema: str, column: LedgerColumn, flushed_through: int | None, cap: int | None
) -> int:
    if flushed_through is None:
        where = sql.SQL("{} IS NOT NULL").format(sql.Identifier(column.column))
        return bounded_count(conn, schema, column.table, where, cap=cap)
    where = sql.SQL("{} > %s").format(sql.Identifier(column.column))
    return bounded_count(conn, schema, column.table, where, (flushed_through,), cap=cap)


def _watermark_table_empty(conn: psycopg.Connection, schema: str) -> bool:
    """True when ledgers_row_v2 exists and holds no row (a missing one is reported elsewhere)."""
    try:
        with conn.transaction():
            return not conn.execute(
                sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(schema, WATERMARK_TABLE))
            ).fetchone()[0]
    except psycopg.errors.UndefinedTable:
        return False
