"""What /health and /metrics report, read from PostgreSQL, the catalog and the downstream consumers with bounded waits.

Only the background refresher (flusher.app.probe_cache) calls StateReader.read(); requests answer from its last
Snapshot. Every wait here is bounded by `timeout_seconds` (PROBE_TIMEOUT_SECONDS): the pool's wait for a connection,
connecting, each statement and each lock, so one read ends in a known time whatever is down (budget_seconds()).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from flusher.config import Settings, connection_reason, with_session_options
from flusher.downstream import ConsumerReading, read_all
from flusher.registry import WATERMARK_COLUMN, WATERMARK_TABLE, selected_tables, unselected_tables
from flusher.state import StateStore, StateSummary
from flusher.stuck import StuckRows, find_stuck_rows

PROBE_TIMEOUT_SECONDS = 3  # each wait of a read: a connection, a statement, a lock, a consumer's host
# Stuck rows are counted up to this many per table and kind on each read, so a read stays cheap.
STUCK_ROWS_CAP = 100_000
DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0]


@dataclass
class Snapshot:
    """Everything /health and /metrics report, read in one go."""

    summary: StateSummary | None = None
    recent: list[str] = field(default_factory=list)
    hot_read: bool = False  # False: the hot buffer could not be read, so its figures (and the lag) are unknown
    hot_min: int | None = None
    hot_max: int | None = None
    hot_rows: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    vacuums: int = 0
    flush_durations: dict[str, tuple[list[int], float, int]] = field(default_factory=dict)
    delete_durations: dict[str, tuple[list[int], float, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    consumers: list[ConsumerReading] = field(default_factory=list)
    stuck: StuckRows = field(default_factory=StuckRows)

    def consumer_lag(self, reading: ConsumerReading) -> int | None:
        """Hot ledgers past a consumer's checkpoint; for an unusable one, the flusher's own lag (its runs skip)."""
        if reading.problem or reading.checkpoint is None:
            return self.lag
        if not self.hot_read:
            return None
        return 0 if self.hot_max is None else max(0, self.hot_max - reading.checkpoint)

    @property
    def lag(self) -> int | None:
        """Ledgers in the hot buffer beyond the last flushed watermark (all of them before the first flush);
        None when unknown (the hot buffer was not read), 0 when it is empty."""
        if not self.hot_read:
            return None
        if self.hot_max is None:
            return 0
        last = self.summary.last_watermark if self.summary else None
        return self.hot_max - (last if last is not None else self.hot_min - 1)


class _Held:
    """A pool look-alike handing out one connection already taken, so StateStore's reads share its transaction."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        yield self.conn


class CatalogCheck:
    """Is the DuckLake catalog reachable? One persistent connection, re-opened (once, at once) when it broke."""

    def __init__(self, settings: Settings, timeout_seconds: int = PROBE_TIMEOUT_SECONDS) -> None:
        self.settings = settings
        self.timeout = timeout_seconds
        self.conn: psycopg.Connection | None = None

    def problem(self) -> str | None:
        reused = self.conn is not None and not self.conn.closed
        try:
            self._ping()
        except psycopg.Error as exc:
            self.close()
            if not reused:
                return self._describe(exc)
            try:  # the old connection died (a catalog restart): a fresh one tells whether it is down now
                self._ping()
            except psycopg.Error as again:
                self.close()
                return self._describe(again)
        return None

    def _ping(self) -> None:
        if self.conn is None or self.conn.closed:
            conninfo = with_session_options(self.settings.ducklake.catalog_conninfo(), self.timeout)
            self.conn = psycopg.connect(conninfo, connect_timeout=self.timeout, autocommit=True)
        self.conn.execute("SELECT 1")

    def _describe(self, exc: psycopg.Error) -> str:  # libpq's reason names host and port; the database is ours to add
        return f"DuckLake catalog {self.settings.ducklake.describe_catalog()} unreachable: {connection_reason(exc)}"

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class StateReader:
    """Reads a Snapshot on the hot pool and a persistent catalog connection; never raises for a server being down."""

    def __init__(
        self, settings: Settings, pool: ConnectionPool | None, timeout_seconds: int = PROBE_TIMEOUT_SECONDS
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.timeout = timeout_seconds
        self.specs = selected_tables(settings.flush)
        self.tables = [t.name for t in self.specs]
        self.unselected = unselected_tables(settings.flush)  # known tables an explicit flush.tables leaves out
        self.catalog = CatalogCheck(settings, timeout_seconds)
        self._state_ready = False
        self._lock = threading.Lock()

    def budget_seconds(self) -> float:
        """The longest a read takes with every server down or hanging: the hot buffer (a pool wait and a direct
        connect for libpq's reason, or two tries of statements), the catalog (two connects) and each consumer
        (a connect and a statement)."""
        return self.timeout * (4 + 2 + 2 * len(self.settings.downstream))

    def read(self) -> Snapshot:
        with self._lock:
            snap, problem = self._read_hot()
            snap.problems += [p for p in (problem, self.catalog.problem()) if p]
            snap.consumers = read_all(self.settings.downstream, self.timeout)
            return snap

    def close(self) -> None:
        with self._lock:
            self.catalog.close()

    def _read_hot(self) -> tuple[Snapshot, str | None]:
        """The state and hot-buffer figures, or an empty Snapshot (hot figures unknown) and why."""
        # A restart leaves every pooled connection dead, each failing at once when used: try past all of them.
        attempts = (self.pool.max_size if self.pool is not None else 0) + 1
        for attempt in range(1, attempts + 1):
            held: psycopg.Connection | None = None
            try:
                with self.pool.connection(timeout=self.timeout) as conn:
                    held = conn
                    snap = Snapshot()
                    with conn.transaction():
                        # Bounded here, not in the pool's conninfo: the flusher's own statements keep their limits.
                        conn.execute(
                            "SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true)",
                            (f"{self.timeout}s", f"{self.timeout}s"),
                        )
                        self._read_state(conn, snap)
                snap.hot_read = True
                return snap, None
            except PoolTimeout:
                return Snapshot(), self._unreachable(self._connect_reason())
            except psycopg.errors.QueryCanceled as exc:  # statement_timeout or lock_timeout: busy or locked
                return Snapshot(), self._problem(f"did not answer within {self.timeout} s: {connection_reason(exc)}")
            except psycopg.OperationalError as exc:
                if attempt < attempts and held is not None and held.broken:
                    continue  # a pooled connection from before a restart: the pool drops it, the next may be fresh
                return Snapshot(), self._unreachable(connection_reason(exc))
            except (psycopg.Error, OSError) as exc:
                return Snapshot(), self._problem(f"cannot be read: {connection_reason(exc)}")
        raise AssertionError("not reached: the last attempt returns")

    def _unreachable(self, reason: str) -> str:
        return self._problem(f"unreachable: {reason}")

    def _problem(self, what: str) -> str:
        return f"PostgreSQL {self.settings.postgres.describe()} {what}"

    def _connect_reason(self) -> str:
        """The pool gave no connection in time: libpq's own reason, from one bounded connect."""
        try:
            psycopg.connect(self.settings.postgres.conninfo(), connect_timeout=self.timeout).close()
        except psycopg.Error as exc:
            return connection_reason(exc)
        return f"no pooled connection within {self.timeout} s (the pool is busy or reconnecting)"

    def _read_state(self, conn: psycopg.Connection, snap: Snapshot) -> None:
        state = StateStore(_Held(conn), self.settings.flush.state_schema)  # type: ignore[arg-type]
        if not self._state_ready:  # a service may start before the first flush created the state tables
            state.ensure()
            self._state_ready = True
        snap.summary = state.summary()
        snap.recent = state.recent_statuses(self.settings.service.unhealthy_after_failures)
        snap.failures = state.failures_by_table()
        snap.vacuums = state.vacuum_count()
        snap.flush_durations = state.duration_buckets("flush_seconds", DURATION_BUCKETS)
        snap.delete_durations = state.duration_buckets("delete_seconds", DURATION_BUCKETS)
        schema = self.settings.postgres.schema_name
        snap.hot_min, snap.hot_max = conn.execute(
            sql.SQL("SELECT min({c}), max({c}) FROM {t}").format(
                c=sql.Identifier(WATERMARK_COLUMN), t=sql.Identifier(schema, WATERMARK_TABLE)
            )
        ).fetchone()
        snap.hot_rows = dict(
            conn.execute(
                "SELECT relname, n_live_tup FROM pg_stat_user_tables WHERE schemaname = %s AND relname = ANY(%s)",
                (schema, self.tables),
            ).fetchall()
        )
        last = snap.summary.last_watermark if snap.summary else None
        snap.stuck = find_stuck_rows(conn, schema, self.specs, self.unselected, last, cap=STUCK_ROWS_CAP)
