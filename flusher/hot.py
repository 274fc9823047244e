"""The PostgreSQL side: the flusher lock, the pinned snapshot and watermark, deletes and VACUUM."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from flusher.config import SESSION_SETTINGS_PG14, PostgresSettings, connection_reason, sentence
from flusher.registry import WATERMARK_COLUMN, WATERMARK_TABLE
from flusher.secrets import MaskedMessage

_SNAPSHOT_ID = re.compile(r"^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$")


class HotBufferError(MaskedMessage, RuntimeError):
    """The hot buffer could not be read or changed; the message says what to do."""


class DeleteMismatch(HotBufferError):
    """The delete would remove a different number of rows than the flush copied; it was rolled back."""


@dataclass(frozen=True)
class Mark:
    """What one run flushes: rows at or below `watermark`, as seen by `snapshot`."""

    batch_id: int
    watermark: int
    snapshot: str
    hot_min: int | None
    hot_max: int | None
    previous_watermark: int | None


def lock_key(state_schema: str) -> str:
    """The advisory-lock name: one flusher per hot buffer and state schema."""
    return f"postgres-ducklake-flusher:{state_schema}"


APPLICATION_NAME = "postgres-ducklake-flusher"  # every flusher session's, until a run names itself
_HOLDER_PREFIX = "flusher:"  # application_name is cut at 63 bytes: "flusher:maintenance:<uuid>" fits


def holder_name(kind: str, flow_run_id: str | None) -> str:
    """The application_name of the session holding the flusher lock: what kind of run, and which flow run."""
    return f"{_HOLDER_PREFIX}{kind}:{flow_run_id or 'no flow run'}"


@dataclass(frozen=True)
class LockHolder:
    """The session holding the flusher lock: its backend pid and application_name (None: released meanwhile)."""

    pid: int | None
    application_name: str | None

    @property
    def kind(self) -> str | None:
        """ "flush" or "maintenance" when a flusher run holds it (see holder_name), else None."""
        name = self.application_name or ""
        return name.removeprefix(_HOLDER_PREFIX).partition(":")[0] if name.startswith(_HOLDER_PREFIX) else None

    def describe(self) -> str:
        """A sentence naming what holds the lock, e.g. 'maintenance is running (flow run ..., backend pid 42)'."""
        if self.pid is None:
            return "another session held the flusher lock (it has let go since)"
        where = f"PostgreSQL backend pid {self.pid}"
        if self.kind is not None:
            run = (self.application_name or "").removeprefix(f"{_HOLDER_PREFIX}{self.kind}:")
            what = "another flush is running" if self.kind == "flush" else f"{self.kind} is running"
            return f"{what} (flow run {run}, {where}) and holds the flusher lock"
        if self.application_name == APPLICATION_NAME:  # a flusher from before runs named themselves
            return f"another flusher process (a flush or maintenance; {where}) holds the flusher lock"
        app = f"application_name {self.application_name!r}" if self.application_name else "no application_name"
        return f"a session that is not a flusher run ({where}, {app}) holds the flusher lock"


def configure_session(conn: psycopg.Connection) -> None:
    """Apply the session settings libpq's `options` cannot carry (PostgreSQL 14+ only); leaves no transaction open."""
    if conn.info.server_version < 140000:
        return
    for name, value in SESSION_SETTINGS_PG14.items():
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.commit()  # a non-autocommit connection opened a transaction, and a rollback would undo the setting


def connect(pg: PostgresSettings, autocommit: bool = True) -> psycopg.Connection:
    """A connection with the flusher's session settings, and a message that names the server when it fails."""
    try:
        conn = psycopg.connect(pg.conninfo(), autocommit=autocommit)
        configure_session(conn)
        return conn
    except psycopg.OperationalError as exc:
        raise HotBufferError(
            f"cannot connect to PostgreSQL {pg.describe()}: {sentence(connection_reason(exc))} Check "
            "postgres.host/port/user/password and that the server is running."
        ) from None


def make_pool(pg: PostgresSettings) -> ConnectionPool:
    """A small pool of autocommit connections for state writes, deletes and VACUUM."""
    connect(pg).close()  # fail fast with a clear message instead of a pool timeout
    return ConnectionPool(
        pg.conninfo(),
        min_size=1,
        max_size=pg.pool_size,
        kwargs={"autocommit": True},
        open=True,
        name="flusher",
        configure=configure_session,
        timeout=max(30, pg.connect_timeout_seconds),
    )


class ControlSession:
    """Holds the flusher lock and the exported snapshot from the watermark until the last delete has started."""

    def __init__(self, pg: PostgresSettings) -> None:
        self.pg = pg
        self.conn = connect(pg)
        self.snapshot: str | None = None

    def try_lock(self, key: str, wait_seconds: float) -> bool:
        """Take the session-level advisory lock, waiting up to wait_seconds; the lock dies with the connection."""
        deadline = time.monotonic() + wait_seconds
        while True:
            if self.conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)).fetchone()[0]:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    def announce(self, kind: str, flow_run_id: str | None) -> None:
        """Name this session after the run holding the lock (its application_name), so a blocked run can say who."""
        self.conn.execute("SELECT set_config('application_name', %s, false)", (holder_name(kind, flow_run_id),))

    def lock_holder(self, key: str) -> LockHolder:
        """Who holds the flusher lock (pid and application_name), for the 'skipped' message."""
        row = self.conn.execute(
            "SELECT l.pid, a.application_name FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted "
            "AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended(%s, 0) LIMIT 1",
            (key,),
        ).fetchone()
        return LockHolder(*row) if row else LockHolder(None, None)

    def pin_snapshot(self) -> tuple[str, int | None, int | None]:
        """Open the REPEATABLE READ transaction, export its snapshot, and read min/max ledger in it."""
        self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        table = sql.Identifier(self.pg.schema_name, WATERMARK_TABLE)
        column = sql.Identifier(WATERMARK_COLUMN)
        try:
            snapshot, low, high = self.conn.execute(
                sql.SQL("SELECT pg_export_snapshot(), min({c}), max({c}) FROM {t}").format(c=column, t=table)
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            self.conn.execute("ROLLBACK")
            raise HotBufferError(
                f"the watermark table {self.pg.schema_name}.{WATERMARK_TABLE} does not exist in {self.pg.describe()}; "
                "create the hot-buffer schema (schema/hot_buffer.sql) or fix postgres.database/schema"
            ) from None
        if any(value is not None and not isinstance(value, int) for value in (low, high)):
            self.conn.execute("ROLLBACK")
            raise HotBufferError(
                f"the watermark column {self.pg.schema_name}.{WATERMARK_TABLE}.{WATERMARK_COLUMN} is not an integer "
                f"(it gave {type(high).__name__} values), so MAX() would compare as text and pick a wrong ledger; "
                f"change it to BIGINT (ALTER TABLE ... ALTER COLUMN {WATERMARK_COLUMN} TYPE bigint USING "
                f"{WATERMARK_COLUMN}::bigint). Nothing was flushed or deleted."
            )
        self.snapshot = snapshot
        return snapshot, low, high

    def count_at_or_below(self, table: str, column: str, watermark: int) -> int:
        """Rows a flush would move, seen in the pinned snapshot (for dry runs)."""
        query = sql.SQL("SELECT count(*) FROM {t} WHERE {c} <= %s").format(
            t=sql.Identifier(self.pg.schema_name, table), c=sql.Identifier(column)
        )
        return self.conn.execute(query, (watermark,)).fetchone()[0]

    def release(self) -> None:
        """End the snapshot transaction (its exported snapshot becomes unusable)."""
        if self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self.conn.execute("ROLLBACK")
        self.snapshot = None

    def close(self) -> None:
        """Close the connection, which also frees the advisory lock."""
        self.conn.close()


# DuckDB's names for the PostgreSQL integer types (and the unsigned ones a foreign source could show).
DUCKDB_INTEGER_TYPES = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}
)


def ledger_type_refusal(schema: str, table: str, column: str, type_name: str) -> str:
    """Why a table whose ledger column is not an integer is not flushed (nor counted, nor taken over)."""
    return (
        f"refused: ledger column {schema}.{table}.{column} has type {type_name}, not an integer type, so "
        f"'{column} <= watermark' would compare as text ('10' < '9') and move the wrong rows. "
        f"Change it to BIGINT (ALTER TABLE {schema}.{table} ALTER COLUMN {column} "
        f"TYPE bigint USING {column}::bigint); its rows stay in PostgreSQL until then"
    )


def choose_watermark(
    hot_min: int | None, hot_max: int | None, previous: int | None, max_ledgers: int, ceiling: int | None = None
) -> int | None:
    """The ledger to flush up to: the hot maximum, or the previous watermark (late rows still move); capped (catch-up).

    The cap counts from the oldest ledger in the hot buffer, but never goes below the previous watermark.
    `ceiling` (the lowest downstream checkpoint) bounds it all: nothing is flushed that a consumer still needs in hot.
    """
    candidates = [v for v in (hot_max, previous) if v is not None]
    if not candidates:
        return None
    watermark = max(candidates)
    if max_ledgers > 0 and hot_min is not None:
        floor = previous if previous is not None else hot_min
        watermark = min(watermark, max(hot_min + max_ledgers - 1, floor))
    return watermark if ceiling is None else min(watermark, ceiling)


def validate_snapshot_id(snapshot: str) -> str:
    if not _SNAPSHOT_ID.match(snapshot):
        raise ValueError(f"not a PostgreSQL snapshot id: {snapshot!r}")
    return snapshot


def delete_at_snapshot(
    conn: psycopg.Connection,
    pg: PostgresSettings,
    table: str,
    column: str,
    watermark: int,
    snapshot: str,
) -> int:
    """DELETE rows <= watermark as seen by the flush's snapshot, inside the caller's open transaction."""
    conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(validate_snapshot_id(snapshot))))
    conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{pg.lock_timeout_seconds}s")))
    conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(f"{pg.statement_timeout_seconds}s")))
    query = sql.SQL("DELETE FROM {t} WHERE {c} <= %s").format(
        t=sql.Identifier(pg.schema_name, table), c=sql.Identifier(column)
    )
    return conn.execute(query, (watermark,)).rowcount


def vacuum_analyze(pool: ConnectionPool, pg: PostgresSettings, table: str) -> None:
    with pool.connection() as conn:
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(pg.schema_name, table)))


def hot_row_counts(conn: psycopg.Connection, schema: str, tables: list[str]) -> dict[str, int | None]:
    """Exact row counts per hot table (None where the table is missing)."""
    counts: dict[str, int | None] = {}
    for table in tables:
        try:
            with conn.transaction():
                counts[table] = conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
                ).fetchone()[0]
        except psycopg.errors.UndefinedTable:
            counts[table] = None
    return counts


def table_bytes(conn: psycopg.Connection, schema: str, tables: list[str]) -> dict[str, int]:
    """Heap + TOAST bytes of each existing table (the planner's cheap size, no scan): how long its copy will take."""
    rows = conn.execute(
        "SELECT c.relname, pg_table_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind IN ('r', 'p')",
        (schema, tables),
    ).fetchall()
    return {t: size for t, size in rows}


def unconstrained_numeric_columns(conn: psycopg.Connection, schema: str, tables: list[str]) -> set[tuple[str, str]]:
    """(table, column) of NUMERIC columns without a precision, which DuckDB would read as lossy DOUBLE."""
    rows = conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s "
        "AND table_name = ANY(%s) AND data_type = 'numeric' AND numeric_precision IS NULL",
        (schema, tables),
    ).fetchall()
    return {(t, c) for t, c in rows}


@dataclass(frozen=True)
class LedgerColumn:
    """A hot table as the catalog describes it: its ledger column's type and nullability (None: no such column)."""

    table: str
    column: str
    type: str | None
    not_null: bool

    @property
    def is_integer(self) -> bool:
        return self.type in ("smallint", "integer", "bigint")


def ledger_columns(conn: psycopg.Connection, schema: str, columns: dict[str, str]) -> dict[str, LedgerColumn]:
    """table -> its ledger column, for each table of `columns` (table -> column name) that exists; one catalog query."""
    rows = conn.execute(
        "SELECT c.relname, format_type(a.atttypid, a.atttypmod), a.attnotnull FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = (%s::jsonb ->> c.relname) "
        "  AND a.attnum > 0 AND NOT a.attisdropped "
        "WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind IN ('r', 'p')",
        (Jsonb(columns), schema, list(columns)),
    ).fetchall()
    return {t: LedgerColumn(t, columns[t], kind, bool(not_null)) for t, kind, not_null in rows}


def bounded_count(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    where: sql.Composable | None = None,
    params: tuple = (),
    cap: int | None = None,
) -> int:
    """count(*) of a table's rows (matching `where`), stopping at `cap` rows when given, so a scrape stays cheap."""
    source = sql.SQL("SELECT 1 FROM {t}").format(t=sql.Identifier(schema, table))
    if where is not None:
        source = sql.SQL("{} WHERE {}").format(source, where)
    if cap is not None:
        source = sql.SQL("{} LIMIT {}").format(source, sql.Literal(cap))
    return conn.execute(sql.SQL("SELECT count(*) FROM ({}) s").format(source), params).fetchone()[0]


def ledger_range(conn: psycopg.Connection, schema: str) -> tuple[int | None, int | None]:
    """min/max ledger of the watermark table (the catch-up's backlog; an index lookup each)."""
    query = sql.SQL("SELECT min({c}), max({c}) FROM {t}").format(
        c=sql.Identifier(WATERMARK_COLUMN), t=sql.Identifier(schema, WATERMARK_TABLE)
    )
    low, high = conn.execute(query).fetchone()
    return low, high
