"""DELETE: remove a flushed table's rows from PostgreSQL and confirm the batch, atomically.

Core, no Prefect: called per table by the delete subflow (flows/bronze_flush.py) on the connection pool, not as a
task run of its own: 19 task runs cost the Prefect server ~0.45 CPU-s and the subflow ~0.16 s per run (measured at
seed size), while each table's outcome already shows in the run's table artifact and in the subflow's log.
"""

from __future__ import annotations

import logging
import time

import psycopg
from psycopg_pool import ConnectionPool

from flusher import failpoints
from flusher.config import PostgresSettings
from flusher.hot import DeleteMismatch, Mark, delete_at_snapshot
from flusher.registry import TableSpec
from flusher.report import DeleteOutcome
from flusher.state import StateStore

_LOGGER = logging.getLogger(__name__)
# The row changed or stayed locked after the flush read it: leave the batch unconfirmed; the next run re-flushes it.
_RETRY_NEXT_RUN = (psycopg.errors.SerializationFailure, psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled)


def delete_flushed(
    pool: ConnectionPool,
    state: StateStore,
    postgres: PostgresSettings,
    spec: TableSpec,
    mark: Mark,
    rows_flushed: int,
    already_in_lake: int = 0,
    logger: logging.Logger | logging.LoggerAdapter = _LOGGER,
    read_point: int | None = None,
) -> DeleteOutcome:
    """In one transaction on the flush's snapshot: DELETE rows <= watermark and mark the batch confirmed.

    The delete must match what the flush read: the rows it copied plus, in a takeover, those it found in the lake.
    read_point: the lake snapshot holding the rows deleted here (FlushOutcome.read_point), recorded with the
    confirmation so that readers split hot and lake at it.
    """
    started = time.perf_counter()
    with pool.connection() as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        try:
            deleted = delete_at_snapshot(conn, postgres, spec.name, spec.ledger_column, mark.watermark, mark.snapshot)
            if deleted != rows_flushed + already_in_lake:
                found = f" and found {already_in_lake} already in the lake" if already_in_lake else ""
                raise DeleteMismatch(
                    f"{spec.name}: the delete matched {deleted} rows but the flush copied {rows_flushed}{found}; "
                    "rolled back"
                )
            failpoints.hit("in_delete", spec.name)
            state.confirm(conn, mark.batch_id, spec.name, deleted, time.perf_counter() - started, read_point)
            conn.execute("COMMIT")
        except _RETRY_NEXT_RUN as exc:
            conn.execute("ROLLBACK")
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
            logger.warning(
                "Left %s for the next run: rows changed or were locked after the flush read them (%s)",
                spec.name,
                reason,
            )
            return DeleteOutcome(spec.name, 0, time.perf_counter() - started, deferred=reason)
        except BaseException:
            if not conn.closed:
                conn.execute("ROLLBACK")
            raise
    failpoints.hit("after_delete", spec.name)
    state.reconcile_one(mark.batch_id, spec.name)
    seconds = time.perf_counter() - started
    logger.info("Deleted %s rows from %s in PostgreSQL in %.2fs", deleted, spec.name, seconds)
    return DeleteOutcome(spec.name, deleted, seconds)
