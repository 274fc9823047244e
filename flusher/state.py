"""The flusher's persistent state (runs and per-table batches) in its own PostgreSQL schema."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from flusher.certificate import Certificate
from flusher.statuses import OPEN_BATCH_STATUSES, BatchStatus, RunStatus

# Status values the SQL below names ({batch_confirmed}, {run_completed}, ...), inlined as literals: the statements
# the server sees stay exactly as written before (the partial index table_batches_open matches on them).
_STATUS_SQL = {
    **{f"batch_{s.name.lower()}": sql.Literal(str(s)) for s in BatchStatus},
    **{f"run_{s.name.lower()}": sql.Literal(str(s)) for s in RunStatus},
}


@dataclass(frozen=True)
class StateIdentity:
    """The state_identity row: which state this is and whether it has adopted the lake (see flusher_state.sql)."""

    state_id: str
    created_at: datetime
    adopted_at: datetime | None
    adopted_how: str | None
    known_snapshot: int | None
    legacy_labels_upto: int | None

    @property
    def adopted(self) -> bool | None:
        """True: adopted; False: a takeover started and did not finish; None: not decided yet (a new state)."""
        if self.adopted_at is not None:
            return True
        return False if self.adopted_how is not None else None

    def describe(self) -> str:
        """One line for `status`."""
        if self.adopted is True:
            return f"state {self.state_id}: adopted ({self.adopted_how}) at {self.adopted_at:%Y-%m-%d %H:%M:%S %Z}"
        if self.adopted is False:
            return f"state {self.state_id}: takeover required ({self.adopted_how} started, not finished)"
        return (
            f"state {self.state_id}: not adopted yet (the first flush adopts an empty lake; takeover required if not)"
        )


@dataclass(frozen=True)
class ConfirmedBatch:
    """A confirmed batch of one table that committed rows to the lake, and its certificate (None before
    certificates, or with them off); previous_watermark: the table's confirmed batch before it, if any."""

    batch_id: int
    watermark: int
    previous_watermark: int | None
    snapshot_id: int
    rows_flushed: int | None
    certificate: Certificate | None


def _certificate_values(certificate: Certificate | None) -> tuple:
    """table_batches' certificate columns; all NULL without one (a retry that copied nothing must not keep an
    earlier attempt's figures)."""
    c = certificate
    return (c.rows, c.digest, c.algorithm, list(c.columns)) if c else (None, None, None, None)


@dataclass(frozen=True)
class StateSummary:
    flush_count: int
    failed_count: int
    last_flush_time: datetime | None
    last_watermark: int | None
    total_flushed: int
    total_deleted: int
    tables: dict[str, dict[str, Any]]
    # The last run that ended without failing: it flushed, found nothing new to flush, or a downstream consumer held
    # it back (runs go on): what /health's "flushes stopped" reason is measured against.
    last_ok_run_time: datetime | None = None


class StateStore:
    """Reads and writes runs and table batches; every write is its own short transaction unless given a connection."""

    def __init__(self, pool: ConnectionPool, schema: str) -> None:
        self.pool = pool
        self.schema_name = schema
        self.schema = sql.Identifier(schema)
        self._state_id: str | None = None

    def _q(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(schema=self.schema, **_STATUS_SQL)

    def _execute(self, query: str | sql.Composable, params: tuple | dict = ()) -> list[tuple]:
        with self.pool.connection() as conn:
            cur = conn.execute(self._q(query) if isinstance(query, str) else query, params)
            return cur.fetchall() if cur.description else []

    def ensure(self) -> None:
        """Create the state schema and tables if missing."""
        ddl = resources.files("flusher.schema").joinpath("flusher_state.sql").read_text()
        with self.pool.connection() as conn, conn.transaction():
            # Two flushers starting on a fresh database would otherwise race on CREATE ... IF NOT EXISTS.
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('postgres-ducklake-flusher:ddl', 0))")
            conn.execute(self._q(ddl))
            # A state from before state ids (runs, no identity row) adopted the lake long ago: say so, and keep its
            # labels without a state id undoable, but only for the batches it had allocated by now.
            conn.execute(
                self._q(
                    "INSERT INTO {schema}.state_identity (adopted_at, adopted_how, known_snapshot, legacy_labels_upto) "
                    "SELECT now(), 'upgrade', (SELECT coalesce(max(lake_snapshot_id), 0) FROM {schema}.table_batches), "
                    "max(batch_id) FROM {schema}.runs HAVING count(*) > 0 ON CONFLICT (id) DO NOTHING"
                )
            )
            conn.execute(self._q("INSERT INTO {schema}.state_identity DEFAULT VALUES ON CONFLICT (id) DO NOTHING"))

    def identity(self) -> StateIdentity:
        """The state_identity row (ensure() creates it)."""
        with self.pool.connection() as conn:
            row = conn.execute(
                self._q(
                    "SELECT state_id::text, created_at, adopted_at, adopted_how, known_snapshot, legacy_labels_upto "
                    "FROM {schema}.state_identity"
                )
            ).fetchone()
        if row is None:
            raise RuntimeError("the flusher state has no state_identity row; run `postgres-ducklake-flusher init`")
        return StateIdentity(*row)

    def state_id(self) -> str:
        """This state's id, carried in every lake commit label (it never changes, so it is read once)."""
        if self._state_id is None:
            self._state_id = self.identity().state_id
        return self._state_id

    def adopted(self) -> bool | None:
        """True: adopted; False: a takeover started and did not finish; None: not decided yet (a new state)."""
        return self.identity().adopted

    def begin_adoption(self, how: str) -> None:
        """A takeover starts: flushes refuse (adopted() is False) until mark_adopted() ends it."""
        self._execute("UPDATE {schema}.state_identity SET adopted_at = NULL, adopted_how = %s", (how,))

    def mark_adopted(self, how: str, lake_snapshot: int | None = None) -> None:
        """This state owns the lake from now on ('empty lake', 'takeover', ...).

        Lake commits up to `lake_snapshot` (the lake's latest snapshot when the adoption looked at it) are accounted
        for and never checked again; without it, those committed up to now are (by the catalog's snapshot time).
        """
        self._execute(
            "UPDATE {schema}.state_identity SET adopted_at = now(), adopted_how = %s, known_snapshot = %s",
            (how, lake_snapshot),
        )

    def advance_known_snapshot(self, snapshot_id: int) -> None:
        """Every commit up to `snapshot_id` has been checked and is this state's or from before its adoption."""
        self._execute(
            "UPDATE {schema}.state_identity SET known_snapshot = %s "
            "WHERE known_snapshot IS NULL OR known_snapshot < %s",
            (snapshot_id, snapshot_id),
        )

    def known_batches(self, pairs: list[tuple[int, str]]) -> set[tuple[int, str]]:
        """The (batch, table) pairs of `pairs` that this state has a table_batches row for."""
        if not pairs:
            return set()
        rows = self._execute(
            "SELECT b.batch_id, b.table_name FROM {schema}.table_batches b "
            "JOIN unnest(%s::bigint[], %s::text[]) AS p(batch_id, table_name) USING (batch_id, table_name)",
            ([p[0] for p in pairs], [p[1] for p in pairs]),
        )
        return {(r[0], r[1]) for r in rows}

    _RECONCILE = (
        "UPDATE {schema}.table_batches b SET status = {batch_confirmed}, rows_deleted = c.rows_deleted, "
        "delete_seconds = c.delete_seconds, error = NULL, updated_at = now() FROM {schema}.confirmed_batches c "
        "WHERE c.batch_id = b.batch_id AND c.table_name = b.table_name AND b.status <> {batch_confirmed}"
    )

    def reconcile(self) -> None:
        """Bring table_batches.status in line with confirmed_batches (a crash can fall between the two)."""
        self._execute(self._RECONCILE)

    def reconcile_one(self, batch: int, table: str) -> None:
        """reconcile() for one just-confirmed batch of one table: a primary-key lookup, not a join over the history."""
        self._execute(self._RECONCILE + " AND b.batch_id = %s AND b.table_name = %s", (batch, table))

    def start_run(self, flow_run_id: str | None) -> int:
        """Open a run (the caller holds the flusher lock, so any run still 'running' died) and return its batch id."""
        self.reconcile()
        self._execute(
            "UPDATE {schema}.runs SET status = {run_abandoned}, finished_at = now(), "
            "message = 'the process stopped before the run finished' WHERE status = {run_running}"
        )
        return self._execute("INSERT INTO {schema}.runs (flow_run_id) VALUES (%s) RETURNING batch_id", (flow_run_id,))[
            0
        ][0]

    def last_watermark(self) -> int | None:
        """The highest watermark any table was confirmed at."""
        return self._execute("SELECT max(watermark) FROM {schema}.table_batches WHERE status = {batch_confirmed}")[0][0]

    def rows_flushed_by(self, flow_run_id: str) -> int:
        """Rows the runs of one flow run copied into the lake (0 when it took no lock)."""
        return self._execute(
            "SELECT coalesce(sum(rows_flushed), 0)::bigint FROM {schema}.runs WHERE flow_run_id = %s", (flow_run_id,)
        )[0][0]

    def open_batches(self, table: str) -> list[int]:
        """Batches of `table` whose lake commit (if any) was never confirmed by a delete."""
        rows = self._execute(
            "SELECT batch_id FROM {schema}.table_batches b WHERE table_name = %s AND status = ANY(%s) "
            "AND NOT EXISTS (SELECT 1 FROM {schema}.confirmed_batches c "
            "  WHERE c.batch_id = b.batch_id AND c.table_name = b.table_name) ORDER BY batch_id",
            (table, [str(s) for s in OPEN_BATCH_STATUSES]),
        )
        return [r[0] for r in rows]

    def record_pending(self, batch: int, table: str, watermark: int) -> bool:
        """Note that the table's flush starts; True on its first attempt in this batch, False on a retry."""
        rows = self._execute(
            "INSERT INTO {schema}.table_batches (batch_id, table_name, watermark, status) "
            "VALUES (%s, %s, %s, {batch_pending}) "
            "ON CONFLICT (batch_id, table_name) DO UPDATE SET status = {batch_pending}, error = NULL, "
            "updated_at = now() "
            "RETURNING (xmax = 0)",  # xmax is 0 on a fresh insert and set when ON CONFLICT updated the row
            (batch, table, watermark),
        )
        return bool(rows[0][0])

    def record_committed(
        self,
        batch: int,
        table: str,
        snapshot_id: int | None,
        rows: int,
        seconds: float,
        undone: list[int],
        rows_expected: int | None = None,
        certificate: Certificate | None = None,
    ) -> None:
        """The lake commit exists (or nothing needed committing): note it and retire the batches it undid.

        rows_expected (takeover batches): the rows the delete must remove, copied plus already in the lake; with
        rows to delete the batch stays 'committed' until its delete confirms it, even if nothing was copied.
        """
        with self.pool.connection() as conn, conn.transaction():
            status = (
                BatchStatus.COMMITTED if (rows if rows_expected is None else rows_expected) else BatchStatus.CONFIRMED
            )
            conn.execute(
                self._q(
                    "UPDATE {schema}.table_batches SET status = %s, lake_snapshot_id = %s, rows_flushed = %s, "
                    "rows_expected = %s, rows_deleted = CASE WHEN %s = {batch_confirmed} THEN 0 END, "
                    "flush_seconds = %s, certificate_rows = %s, certificate_digest = %s, certificate_hash = %s, "
                    "certificate_columns = %s, updated_at = now() WHERE batch_id = %s AND table_name = %s"
                ),
                (
                    status,
                    snapshot_id,
                    rows,
                    rows_expected,
                    status,
                    seconds,
                    *_certificate_values(certificate),
                    batch,
                    table,
                ),
            )
            if undone:
                conn.execute(
                    self._q(
                        "UPDATE {schema}.table_batches SET status = {batch_undone}, updated_at = now() "
                        "WHERE table_name = %s AND batch_id = ANY(%s) AND batch_id <> %s"
                    ),
                    (table, undone, batch),
                )

    # --- completeness certificates (flusher/certificate.py) ---

    def confirmed_batches(self, table: str) -> list[ConfirmedBatch]:
        """The table's confirmed batches that committed to the lake, oldest first, with their certificates."""
        rows = self._execute(
            "SELECT b.batch_id, b.watermark, lag(b.watermark) OVER (ORDER BY b.batch_id), b.lake_snapshot_id, "
            "b.rows_flushed, b.certificate_rows, b.certificate_digest, b.certificate_hash, b.certificate_columns "
            "FROM {schema}.table_batches b JOIN {schema}.confirmed_batches c USING (batch_id, table_name) "
            "WHERE b.table_name = %s AND b.lake_snapshot_id IS NOT NULL ORDER BY b.batch_id",
            (table,),
        )
        return [
            ConfirmedBatch(
                batch_id=r[0],
                watermark=r[1],
                previous_watermark=r[2],
                snapshot_id=r[3],
                rows_flushed=r[4],
                certificate=None if r[5] is None else Certificate(r[5], int(r[6]), r[7], tuple(r[8])),
            )
            for r in rows
        ]

    def record_failed(self, batch: int, table: str, error: str, watermark: int) -> None:
        """Record the table's flush as failed, also when it failed before its batch row existed (a table missing in
        PostgreSQL is refused before anything is written): every failure is counted and shown."""
        self._execute(
            "INSERT INTO {schema}.table_batches (batch_id, table_name, watermark, status, error) "
            "VALUES (%s, %s, %s, {batch_failed}, %s) "
            "ON CONFLICT (batch_id, table_name) DO UPDATE SET status = {batch_failed}, error = EXCLUDED.error, "
            "updated_at = now() WHERE table_batches.status <> {batch_confirmed}",
            (batch, table, watermark, error[:2000]),
        )

    def confirm(
        self,
        conn: psycopg.Connection,
        batch: int,
        table: str,
        rows_deleted: int,
        seconds: float,
        lake_snapshot_id: int | None = None,
    ) -> None:
        """Record a batch as deleted, inside the caller's delete transaction (so both commit or neither).

        lake_snapshot_id: the lake snapshot holding exactly the table's rows deleted so far (the batch's commit, or
        the snapshot a takeover found them in): the table's read point from now on (lake_read_point()).
        """
        conn.execute(
            self._q(
                "INSERT INTO {schema}.confirmed_batches "
                "(batch_id, table_name, rows_deleted, delete_seconds, lake_snapshot_id) VALUES (%s, %s, %s, %s, %s)"
            ),
            (batch, table, rows_deleted, seconds, lake_snapshot_id),
        )

    # --- Readers (flusher/reader.py): the functions schema/flusher_state.sql defines for them ---

    def read_point(self, table: str) -> int:
        """The lake snapshot of `table`'s last confirmed commit; -1 when it has none."""
        return self._execute("SELECT {schema}.lake_read_point(%s)", (table,))[0][0]

    def snapshot_as_of(self, ledger: int, tables: list[str] | None = None) -> int | None:
        """The lake snapshot at which every table (of `tables`) held all its rows at or below `ledger`; None while
        some table has not been flushed that far."""
        return self._execute("SELECT {schema}.lake_snapshot_as_of(%s, %s::text[])", (ledger, tables))[0][0]

    def finish_run(
        self, batch: int, status: RunStatus, watermark: int | None, message: str | None, vacuumed: bool
    ) -> None:
        self._execute(
            "UPDATE {schema}.runs r SET status = %s, watermark = %s, message = %s, vacuumed = %s, finished_at = now(), "
            "rows_flushed = coalesce((SELECT sum(rows_flushed) FROM {schema}.table_batches b "
            "  WHERE b.batch_id = r.batch_id AND b.status IN ({batch_committed}, {batch_confirmed})), 0), "
            "rows_deleted = coalesce((SELECT sum(rows_deleted) FROM {schema}.table_batches b "
            "  WHERE b.batch_id = r.batch_id AND b.status = {batch_confirmed}), 0) "
            "WHERE batch_id = %s",
            (status, watermark, message, vacuumed, batch),
        )

    def _due(self, flag: str, every_n: int) -> bool:
        """True when this run is the Nth completed one since the last run with `flag` set (counted in PostgreSQL)."""
        (since,) = self._execute(
            sql.SQL(
                "SELECT count(*) FROM {schema}.runs WHERE status = {run_completed} AND batch_id > "
                "coalesce((SELECT max(batch_id) FROM {schema}.runs WHERE {flag}), 0)"
            ).format(schema=self.schema, flag=sql.Identifier(flag), **_STATUS_SQL)
        )[0]
        return since + 1 >= every_n

    def vacuum_due(self, every_n: int) -> bool:
        """True when this is the Nth completed run since the last VACUUM (counted in PostgreSQL: restarts keep it)."""
        return self._due("vacuumed", every_n)

    def maintenance_due(self, every_n: int) -> bool:
        """True when this is the Nth completed run since the last in-flush maintenance (the Go service's cadence)."""
        return self._due("maintained", every_n)

    def mark_maintained(self, batch: int) -> None:
        """This run's maintenance finished; the count towards the next one starts after it."""
        self._execute("UPDATE {schema}.runs SET maintained = true WHERE batch_id = %s", (batch,))

    def recent_statuses(self, limit: int) -> list[str]:
        """Statuses of the last `limit` runs that flushed or tried to (newest first)."""
        rows = self._execute(
            "SELECT status FROM {schema}.runs WHERE status IN ({run_completed}, {run_failed}, {run_abandoned}) "
            "ORDER BY batch_id DESC LIMIT %s",
            (limit,),
        )
        return [r[0] for r in rows]

    def duration_buckets(self, column: str, bounds: list[float]) -> dict[str, tuple[list[int], float, int]]:
        """Per table: cumulative counts of `column` (flush_seconds or delete_seconds) below each bound, sum, count."""
        if column not in ("flush_seconds", "delete_seconds"):
            raise ValueError(f"no duration column {column!r}")
        rows = self._execute(
            sql.SQL(
                "SELECT table_name, width_bucket({col}, %s::float8[]), count(*), sum({col}) "
                "FROM {schema}.table_batches WHERE {col} IS NOT NULL GROUP BY 1, 2"
            ).format(col=sql.Identifier(column), schema=self.schema),
            (bounds,),
        )
        out: dict[str, tuple[list[int], float, int]] = {}
        for table, bucket, count, total in rows:
            counts, seconds, n = out.get(table, ([0] * len(bounds), 0.0, 0))
            for k in range(bucket, len(bounds)):  # bucket j holds values in [bounds[j-1], bounds[j])
                counts[k] += count
            out[table] = (counts, seconds + float(total), n + count)
        return out

    def failures_by_table(self) -> dict[str, int]:
        rows = self._execute(
            "SELECT table_name, count(*) FROM {schema}.table_batches WHERE error IS NOT NULL GROUP BY 1"
        )
        return dict(rows)

    def vacuum_count(self) -> int:
        return self._execute("SELECT count(*) FROM {schema}.runs WHERE vacuumed")[0][0]

    def summary(self) -> StateSummary:
        """Totals and per-table figures for status, /health and /metrics."""
        with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            runs = cur.execute(
                self._q(
                    "SELECT count(*) FILTER (WHERE status = {run_completed}) AS flush_count, "
                    "count(*) FILTER (WHERE status = {run_failed}) AS failed_count, "
                    "max(finished_at) FILTER (WHERE status = {run_completed}) AS last_flush_time, "
                    "max(finished_at) FILTER (WHERE status IN ({run_completed}, {run_empty}, {run_skipped})) "
                    "AS last_ok_run_time FROM {schema}.runs"
                )
            ).fetchone()
            tables = cur.execute(
                self._q(
                    "SELECT table_name, "
                    "coalesce(sum(rows_flushed) FILTER (WHERE status = {batch_confirmed}), 0)::bigint AS rows_flushed, "
                    "coalesce(sum(rows_deleted) FILTER (WHERE status = {batch_confirmed}), 0)::bigint AS rows_deleted, "
                    "max(watermark) FILTER (WHERE status = {batch_confirmed}) AS last_watermark, "
                    "max(batch_id) AS last_batch, "
                    "(array_agg(status ORDER BY batch_id DESC))[1] AS last_status, "
                    "(array_agg(error ORDER BY batch_id DESC))[1] AS last_error "
                    "FROM {schema}.table_batches GROUP BY table_name ORDER BY table_name"
                )
            ).fetchall()
        per_table = {t["table_name"]: t for t in tables}
        watermarks = [t["last_watermark"] for t in tables if t["last_watermark"] is not None]
        return StateSummary(
            flush_count=runs["flush_count"],
            failed_count=runs["failed_count"],
            last_flush_time=runs["last_flush_time"],
            last_watermark=max(watermarks) if watermarks else None,
            total_flushed=sum(t["rows_flushed"] for t in tables),
            total_deleted=sum(t["rows_deleted"] for t in tables),
            tables=per_table,
            last_ok_run_time=runs["last_ok_run_time"],
        )
