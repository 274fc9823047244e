"""VACUUM ANALYZE the flushed tables, every Nth completed flush."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flusher import failpoints
from flusher.hot import vacuum_analyze
from flusher.resources import RunResources


@task(name="vacuum-analyze", cache_policy=NO_CACHE, persist_result=False)
def vacuum_tables(res: RunResources, tables: list[str]) -> float:
    """Reclaim the space of deleted rows and refresh planner statistics; returns seconds spent."""
    failpoints.hit("before_vacuum")
    started = time.perf_counter()
    # One table per pooled connection at a time: VACUUMs of different tables do not block each other.
    with ThreadPoolExecutor(max_workers=max(1, min(res.settings.postgres.pool_size, len(tables)))) as workers:
        list(workers.map(lambda table: vacuum_analyze(res.pool, res.settings.postgres, table), tables))
    seconds = time.perf_counter() - started
    get_run_logger().info("VACUUM ANALYZE of %s tables took %.2fs", len(tables), seconds)
    return seconds
