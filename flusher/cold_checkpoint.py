"""cold_flusher_checkpoint: the hot/cold split the Go query API reads, kept as the Go service kept it.

The query API runs `SELECT last_flushed_watermark FROM cold_flusher_checkpoint WHERE id = 1` on the hot database and
reads ledgers at or below it from the lake, above it from PostgreSQL. So the value may only say W once every
configured table holds all its rows at or below W in the lake (its batch at W or above confirmed: copied and deleted),
and it never goes down (a reader must never be sent back to PostgreSQL for rows that have left it).
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from flusher.statuses import BatchStatus

TABLE = "cold_flusher_checkpoint"

# The Go service's DDL and first row, word for word (so an existing table is reused as it is).
_DDL = """CREATE TABLE IF NOT EXISTS {t} (
    id INTEGER PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    last_flushed_watermark BIGINT NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
)"""
_FIRST_ROW = "INSERT INTO {t} (id, last_flushed_watermark) VALUES (1, 0) ON CONFLICT (id) DO NOTHING"

# The lowest, over the configured tables, of each table's highest confirmed watermark; NULL while any table has
# none. confirmed_batches is the truth (table_batches.status follows it after the delete commits); a table with no
# rows at a run's watermark is recorded confirmed at once.
_CONFIRMED_FLOOR = """
SELECT CASE WHEN bool_and(w IS NOT NULL) THEN min(w) END FROM (
    SELECT (SELECT max(b.watermark) FROM {state}.table_batches b
            WHERE b.table_name = t.name AND (b.status = {confirmed} OR EXISTS (
                SELECT 1 FROM {state}.confirmed_batches c WHERE c.batch_id = b.batch_id AND c.table_name = b.table_name
            ))) AS w
    FROM unnest(%s::text[]) AS t(name)
) per_table"""

_ADVANCE = (
    "UPDATE {t} SET last_flushed_watermark = GREATEST(last_flushed_watermark, %s), updated_at = NOW() "
    "WHERE id = 1 AND last_flushed_watermark < %s RETURNING last_flushed_watermark"
)


def _table(schema: str) -> sql.Identifier:
    return sql.Identifier(schema, TABLE)


def ensure(conn: psycopg.Connection, schema: str) -> None:
    """Create the table and its one row if missing (in the hot schema, where the query API finds it)."""
    conn.execute(sql.SQL(_DDL).format(t=_table(schema)))
    conn.execute(sql.SQL(_FIRST_ROW).format(t=_table(schema)))


def read(conn: psycopg.Connection, schema: str) -> int | None:
    row = conn.execute(
        sql.SQL("SELECT last_flushed_watermark FROM {t} WHERE id = 1").format(t=_table(schema))
    ).fetchone()
    return row[0] if row else None


def confirmed_floor(conn: psycopg.Connection, state_schema: str, tables: list[str]) -> int | None:
    """The highest W at which every table in `tables` has all its rows at or below W in the lake (None: not yet)."""
    if not tables:
        return None
    return conn.execute(
        sql.SQL(_CONFIRMED_FLOOR).format(
            state=sql.Identifier(state_schema), confirmed=sql.Literal(str(BatchStatus.CONFIRMED))
        ),
        (tables,),
    ).fetchone()[0]


def advance(
    conn: psycopg.Connection, schema: str, state_schema: str, tables: list[str]
) -> tuple[int | None, int | None]:
    """Raise the checkpoint to the confirmed floor of `tables` if that is higher; returns (floor, value now).

    One transaction: the table and row are created if missing, the row is locked by the UPDATE, GREATEST keeps a
    higher value (a Go service's, or a concurrent writer's) in place.
    """
    with conn.transaction():
        ensure(conn, schema)
        floor = confirmed_floor(conn, state_schema, tables)
        if floor is not None:
            conn.execute(sql.SQL(_ADVANCE).format(t=_table(schema)), (floor, floor))
        return floor, read(conn, schema)
