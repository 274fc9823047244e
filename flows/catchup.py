"""The bronze-catchup flow: capped bronze-flush runs, one after the other, until the hot buffer is nearly caught up.

Each chunk is an ordinary bronze-flush subflow run with max_ledgers_per_run (DESIGN.md C1-C8 unchanged, its own lock,
snapshot, timeouts and state), so a kill anywhere leaves what any killed flush leaves, and a rerun goes on from the
last flushed watermark. Between chunks the loop pauses, so the ingester and PostgreSQL get a breath.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.states import Completed, Failed, State
from psycopg_pool import ConnectionPool
from pydantic import Field

from flusher import failpoints
from flusher.blocks.settings import resolve_settings
from flusher.catchup import Backlog, Chunk, Progress, Step, ledgers_per_interval
from flusher.config import Settings
from flusher.flows.bronze_flush import bronze_flush
from flusher.flows.run_context import started_from_deployment
from flusher.hot import ledger_range, make_pool
from flusher.secrets import install_log_masking, mask, mask_state, masked_errors
from flusher.state import StateStore

install_log_masking()
ARTIFACT_KEY = "bronze-catchup-progress"


@flow(
    name="bronze-catchup",
    validate_parameters=True,
    persist_result=False,
    description="Run capped bronze-flush runs until the hot buffer is at most one interval behind.",
)
def bronze_catchup(
    chunk_ledgers: Annotated[int, Field(ge=1)],
    config_path: str | None = None,
    pause_seconds: Annotated[float, Field(ge=0)] = 2.0,
    behind_ok_ledgers: Annotated[int, Field(ge=0)] | None = None,
    postgres_block: str | None = None,
    ducklake_block: str | None = None,
) -> State:
    """Catch up a backlog in chunks of `chunk_ledgers` ledgers, each an ordinary bronze-flush run.

    Args:
        chunk_ledgers: Ledgers per chunk (each chunk is a bronze-flush run with max_ledgers_per_run set to this).
        config_path: The YAML config file. Empty: the worker's $FLUSHER_CONFIG.
        pause_seconds: Pause between chunks, so the ingester and PostgreSQL are not starved.
        behind_ok_ledgers: Stop once at most this many ledgers are left in the hot buffer (empty: the ledgers that
            close in one flush interval, service.flush_interval_minutes / 5.5 s).
        postgres_block: A prefect-sqlalchemy SqlAlchemyConnector block holding the hot buffer's credentials.
        ducklake_block: A DuckLake Bronze block holding the catalog, data path and S3 keys.
    """
    with masked_errors():
        settings = resolve_settings(config_path, postgres_block, ducklake_block, restricted=started_from_deployment())
        if behind_ok_ledgers is None:
            behind_ok_ledgers = ledgers_per_interval(settings.service.flush_interval_minutes * 60)
        chunk = {
            "config_path": config_path,
            "postgres_block": postgres_block,
            "ducklake_block": ducklake_block,
            "max_ledgers_per_run": chunk_ledgers,
        }
        return mask_state(_catch_up(settings, chunk, pause_seconds, behind_ok_ledgers))


def _backlog(pool: ConnectionPool, settings: Settings, state: StateStore) -> Backlog:
    with pool.connection() as conn:
        low, high = ledger_range(conn, settings.postgres.schema_name)
    return Backlog(low, high, state.last_watermark())


def _catch_up(settings: Settings, chunk: dict[str, Any], pause_seconds: float, behind_ok: int) -> State:
    logger = get_run_logger()
    # Sessions with the flush's settings (statement_timeout among them): a reading between chunks is bounded too.
    with make_pool(settings.postgres) as pool:
        state = StateStore(pool, settings.flush.state_schema)
        state.ensure()
        progress = Progress(_backlog(pool, settings, state), behind_ok)
        logger.info("Catch-up: %s", progress.summary())
        artifact = create_progress_artifact(progress.percent, key=ARTIFACT_KEY, description="catch-up: ledgers moved")
        if progress.start.caught_up(behind_ok):
            update_progress_artifact(artifact, 100.0)
            return Completed(message=f"already caught up: {progress.summary()}")
        started = time.monotonic()
        number = 0
        while True:
            number += 1
            failpoints.hit("catchup_chunk", str(number))  # tests: a kill between chunks
            before, chunk_started = progress.current, time.monotonic()
            sub = bronze_flush(**chunk, return_state=True)
            if not sub.is_completed():
                reason = f"chunk {number} {sub.name.lower()}: {mask(sub.message or '')}"
                logger.error("Catch-up stopped: %s", reason)
                return Failed(message=f"{reason} | {progress.summary()}")
            rows = state.rows_flushed_by(str(sub.state_details.flow_run_id)) if sub.state_details.flow_run_id else 0
            after = _backlog(pool, settings, state)
            step = progress.record(
                Chunk(number, rows, time.monotonic() - chunk_started, before, after), time.monotonic() - started
            )
            logger.info("Catch-up %s", progress.line())
            update_progress_artifact(artifact, 100.0 if step is Step.CAUGHT_UP else progress.percent)
            if step is Step.CAUGHT_UP:
                return Completed(message=f"caught up after {number} chunks: {progress.summary()}")
            if step is Step.STALLED:
                reason = f"chunk {number} moved nothing ({sub.name}: {mask(sub.message or '')})"
                logger.error("Catch-up stopped: %s", reason)
                return Failed(name="Stalled", message=f"no progress: {reason} | {progress.summary()}")
            time.sleep(pause_seconds)  # let the ingester and autovacuum breathe between chunks
