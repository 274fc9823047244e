"""VACUUM ANALYZE the flushed tables, every Nth completed flush."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from psycopg_pool import ConnectionPool

from flusher import failpoints
from flusher.config import PostgresSettings
from flusher.hot import vacuum_analyze


@task(name="vacuum-analyze", cache_policy=NO_CACHE, persist_result=False)
def vacuum_tables(pool: ConnectionPool, postgres: PostgresSettings, tables: list[str], at_once: int) -> float:
    """Reclaim the space of deleted rows and refresh planner statistics; returns seconds spent.

    `at_once`: tables vacuumed at the same time, one per pooled connection (the plan's delete parallelism).
    """
    failpoints.hit("before_vacuum")
    started = time.perf_counter()
    # VACUUMs of different tables do not block each other.
    with ThreadPoolExecutor(max_workers=max(1, min(at_once, len(tables)))) as workers:
        list(workers.map(lambda table: vacuum_analyze(pool, postgres, table), tables))
    seconds = time.perf_counter() - started
    get_run_logger().info("VACUUM ANALYZE of %s tables took %.2fs", len(tables), seconds)
    return seconds
