"""MARK: take the flusher lock, pin a PostgreSQL snapshot and choose the watermark."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flusher import failpoints
from flusher.downstream import DownstreamBlocked, read_all, retention_ceiling
from flusher.hot import Mark, choose_watermark, lock_key
from flusher.resources import RunResources
from flusher.secrets import MaskedMessage


class FlushLocked(MaskedMessage, RuntimeError):
    """Another run (a flush or maintenance) holds the lock; the message names it."""


@task(name="mark-watermark", cache_policy=NO_CACHE, persist_result=False)
def mark_watermark(
    res: RunResources, max_ledgers: int, flow_run_id: str | None = None, floor: int | None = None
) -> Mark | None:
    """Lock, pin the snapshot, read MAX(sequence); returns None when there is nothing to flush.

    `floor`: the watermark is at least this (a takeover reaches the Go flusher's checkpoint even where
    ledgers_row_v2 no longer holds its ledgers), unless a downstream consumer's checkpoint is lower. Raises
    FlushLocked when another run holds the lock (after waiting flush.lock_wait_seconds), and DownstreamBlocked (the
    run recorded as skipped) when a downstream consumer is unreachable or has no positive checkpoint.
    """
    logger = get_run_logger()
    key = lock_key(res.settings.flush.state_schema)
    if not res.control.try_lock(key, res.settings.flush.lock_wait_seconds):
        raise FlushLocked(res.control.lock_holder(key).describe())
    res.control.announce("flush", flow_run_id)
    batch = res.state.start_run(flow_run_id)
    previous = res.state.last_watermark()
    # Read before the snapshot: a checkpoint only grows, so an earlier reading is the safe one.
    readings = read_all(res.settings.downstream)
    try:
        ceiling = retention_ceiling(readings)
    except DownstreamBlocked as exc:
        res.state.finish_run(batch, "skipped", None, str(exc), vacuumed=False)
        raise
    snapshot, hot_min, hot_max = res.control.pin_snapshot()
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
        res.state.finish_run(batch, "empty", None, "hot buffer empty", vacuumed=False)
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
