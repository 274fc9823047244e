"""MARK: take the flusher lock, pin a PostgreSQL snapshot and choose the watermark."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flusher import failpoints
from flusher.config import DownstreamConsumer
from flusher.downstream import DownstreamBlocked, read_all, retention_ceiling
from flusher.hot import ControlSession, Mark, choose_watermark, lock_key
from flusher.secrets import MaskedMessage
from flusher.state import StateStore
from flusher.statuses import RunStatus


class FlushLocked(MaskedMessage, RuntimeError):
    """Another run (a flush or maintenance) holds the lock; the message names it."""


@task(name="mark-watermark", cache_policy=NO_CACHE, persist_result=False)
def mark_watermark(
    control: ControlSession,
    state: StateStore,
    downstream: list[DownstreamConsumer],
    lock_wait_seconds: float,
    max_ledgers: int,
    flow_run_id: str | None = None,
    floor: int | None = None,
) -> Mark | None:
    """Lock, pin the snapshot, read MAX(sequence); returns None when there is nothing to flush.

    `floor`: the watermark is at least this (a takeover reaches the Go flusher's checkpoint even where
    ledgers_row_v2 no longer holds its ledgers), unless a downstream consumer's checkpoint is lower. Raises
    FlushLocked when another run holds the lock (after waiting flush.lock_wait_seconds), and DownstreamBlocked (the
    run recorded as skipped) when a downstream consumer is unreachable or has no positive checkpoint.
    """
    logger = get_run_logger()
    key = lock_key(state.schema_name)  # the lock is per state schema (flush.state_schema)
    if not control.try_lock(key, lock_wait_seconds):
        raise FlushLocked(control.lock_holder(key).describe())
    control.announce("flush", flow_run_id)
    batch = state.start_run(flow_run_id)
    previous = state.last_watermark()
    # Read before the snapshot: a checkpoint only grows, so an earlier reading is the safe one.
    readings = read_all(downstream)
    try:
        ceiling = retention_ceiling(readings)
    except DownstreamBlocked as exc:
        state.finish_run(batch, RunStatus.SKIPPED, None, str(exc), vacuumed=False)
        raise
    snapshot, hot_min, hot_max = control.pin_snapshot()
    lowest = max((v for v in (previous, floor) if v is not None), default=None)
    watermark = choose_watermark(hot_min, hot_max, lowest, max_ledgers, ceiling)
    if ceiling is not None and watermark is not None and ceiling == watermark:
        logger.info(
            "Downstream retention: watermark capped at %s (lowest consumer checkpoint; %s)",
            watermark,
            ", ".join(f"{r.name}={r.checkpoint}" for r in readings),
        )
    failpoints.hit("after_mark")
    if watermark is None:
        logger.info("Hot buffer is empty and nothing was flushed before: nothing to do")
        state.finish_run(batch, RunStatus.EMPTY, None, "hot buffer empty", vacuumed=False)
        return None
    logger.info(
        "Starting flush with watermark=%s (batch %s, hot ledgers %s..%s, previous watermark %s)",
        watermark,
        batch,
        hot_min,
        hot_max,
        previous,
    )
    return Mark(batch, watermark, snapshot, hot_min, hot_max, previous)
