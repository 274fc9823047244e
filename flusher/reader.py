"""Reading hot ∪ lake as one table, every row exactly once at any instant (README "Reading the lake").

Per table, one PostgreSQL statement returns the hot rows AND the table's read point (lake_read_point(): the lake
snapshot of its last confirmed commit, recorded in the same transaction as that commit's delete), so both come from
one PostgreSQL snapshot. The lake rows with snapshot_id <= that point are exactly the rows deleted from the hot
buffer by then; later, unconfirmed commits (a flush between its lake commit and its delete, or one a SIGKILL left
behind) are left out, and their rows are read from the hot buffer. DuckDB cannot share one PostgreSQL snapshot
across several scans, which is why hot rows and read point are one statement, materialised once per query.

The view refuses (an error naming READ_POINT_AHEAD) when the read point is newer than the lake snapshot its DuckDB
transaction reads (a delete confirmed between the two reads); Reader.query() reads again.

Core, no Prefect.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from flusher.config import Settings, load_settings
from flusher.lake import HOT, Column, LakeSession
from flusher.quoting import qualified, quote_ident, quote_literal
from flusher.registry import selected_tables
from flusher.transfer import plan_columns

_LOGGER = logging.getLogger(__name__)
READ_POINT_AHEAD = "flusher-reader: read point ahead of the lake snapshot"
HOT_MARK = "__flusher_hot"  # true on the hot rows of the one-statement result (its first row may carry only the point)
READ_POINT = "__flusher_read_point"


def hot_statement(pg_schema: str, state_schema: str, table: str) -> str:
    """The PostgreSQL statement returning the hot rows of `table` and its read point on each row, in one snapshot.

    A LEFT JOIN from the one-row read point: an empty table still returns one row, carrying the point.
    """
    return (
        f"WITH rp AS MATERIALIZED (SELECT {qualified(state_schema, 'lake_read_point')}"
        f"({quote_literal(table)}) AS {READ_POINT}), "
        f"h AS MATERIALIZED (SELECT true AS {HOT_MARK}, t.* FROM {qualified(pg_schema, table)} t) "
        f"SELECT rp.{READ_POINT}, h.* FROM rp LEFT JOIN h ON true"
    )


def view_sql(view: str, pg_statement: str, hot_select: list[str], lake_table: str | None, lake: str) -> str:
    """CREATE VIEW `view`: the hot rows (as the flush converts them) UNION ALL BY NAME the lake rows up to the read
    point, with the guard that refuses a read point newer than the transaction's lake snapshot."""
    hot = f"WITH h AS MATERIALIZED (SELECT * FROM postgres_query({quote_literal(HOT)}, {quote_literal(pg_statement)}))"
    select_hot = f"SELECT {', '.join(hot_select)} FROM h WHERE {HOT_MARK}"
    if lake_table is None:  # not flushed yet: the hot buffer holds every row
        return f"CREATE OR REPLACE VIEW {quote_ident(view)} AS {hot} {select_hot}"
    point = (
        f"(SELECT CASE WHEN rp > s.id THEN error({quote_literal(READ_POINT_AHEAD)}) ELSE rp END "
        f"FROM (SELECT max({READ_POINT}) AS rp FROM h), {quote_ident(lake)}.current_snapshot() s)"
    )
    return (
        f"CREATE OR REPLACE VIEW {quote_ident(view)} AS {hot} "
        f"{select_hot} UNION ALL BY NAME SELECT * FROM {lake_table} WHERE snapshot_id <= {point}"
    )


def as_of_sql(lake_table: str, ledger_column: str, ledger: int, snapshot: int) -> str:
    """The rows of a lake table at or below `ledger` as the lake held them at `snapshot` (lake_snapshot_as_of)."""
    at = f"AT (VERSION => {int(snapshot)})"
    return f"SELECT * FROM {lake_table} {at} WHERE {quote_ident(ledger_column)} <= {int(ledger)}"


@dataclass
class Reader:
    """A DuckDB connection with one view per table (hot ∪ lake, each row once); the lake attached READ_ONLY."""

    session: LakeSession
    state_schema: str
    ledger_columns: dict[str, str]  # view -> its ledger column

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection of its own on the reader's database (the views are there)."""
        return self.session.cursor()

    def query(self, statement: str, params: Any = None, attempts: int = 20) -> list[tuple]:
        """Run `statement` over the views; read again while a read point is ahead of the lake snapshot (a delete
        confirmed between the hot and the lake read: a moment's race, gone on the next read)."""
        for attempt in range(attempts):
            with self.session.cursor() as cur:
                try:
                    return cur.execute(statement, params).fetchall()
                except duckdb.Error as exc:
                    if READ_POINT_AHEAD not in str(exc) or attempt == attempts - 1:
                        raise
            time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def _pg_value(self, statement: str) -> Any:
        with self.session.cursor() as cur:
            return cur.execute(
                f"SELECT * FROM postgres_query({quote_literal(HOT)}, {quote_literal(statement)})"
            ).fetchone()[0]

    def read_point(self, table: str) -> int:
        """lake_read_point(table): the lake snapshot of the table's last confirmed commit (-1: none)."""
        return self._pg_value(f"SELECT {qualified(self.state_schema, 'lake_read_point')}({quote_literal(table)})")

    def as_of(self, ledger: int) -> int | None:
        """The lake snapshot at which every table of this reader held all its rows at or below `ledger` (None: not
        flushed that far yet); read with as_of_sql() / `AT (VERSION => ...)` for a reproducible result."""
        function = qualified(self.state_schema, "lake_snapshot_as_of")
        tables = ", ".join(quote_literal(t) for t in self.ledger_columns)
        return self._pg_value(f"SELECT {function}({int(ledger)}, ARRAY[{tables}]::text[])")

    def query_as_of(self, table: str, ledger: int) -> list[tuple]:
        """The table's rows at or below `ledger`, read at as_of(ledger): the same answer on every call."""
        snapshot = self.as_of(ledger)
        if snapshot is None:
            raise ValueError(f"not every table has been flushed up to ledger {ledger} yet")
        lake_table = self.session.table(table)
        return self.query(as_of_sql(lake_table, self.ledger_columns[table], ledger, snapshot))

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_reader(config: Settings | str | Path, tables: list[str] | None = None, threads: int | None = None) -> Reader:
    """A Reader for the configured tables (or `tables`) that exist in the hot buffer; extensions from the wheels.

    The views take the hot and lake columns as they are now: open a new reader after a schema change.
    """
    settings = config if isinstance(config, Settings) else load_settings(config)
    session = LakeSession(settings, threads=threads, read_only=True)
    try:
        pg_schema, state_schema = settings.postgres.schema_name, settings.flush.state_schema
        hot = session.columns_by_table(HOT, pg_schema)
        lake = session.columns_by_table(session.lake, session.schema)
        ledgers = {}
        with session.cursor() as cur:
            for spec in selected_tables(settings.flush, tables):
                if spec.name not in hot:
                    continue
                cur.execute(_view_for(session, spec.name, hot[spec.name], lake.get(spec.name), state_schema))
                ledgers[spec.name] = spec.ledger_column
        return Reader(session, state_schema, ledgers)
    except BaseException:
        session.close()
        raise


def _view_for(session: LakeSession, table: str, hot: list[Column], lake: list[Column] | None, state_schema: str) -> str:
    plan = plan_columns(table, hot, lake or [])
    statement = hot_statement(session.settings.postgres.schema_name, state_schema, table)
    return view_sql(table, statement, plan.select, session.table(table) if lake else None, session.lake)
