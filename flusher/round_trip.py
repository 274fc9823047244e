"""How far away the DuckLake catalog is: one measured round trip, which decides how many tables flush at once
(flusher.plan.flush_concurrency) when the configuration leaves it open."""

from __future__ import annotations

import time

import psycopg

SAMPLES = 3
CONNECT_TIMEOUT_SECONDS = 10


def catalog_round_trip_ms(conninfo: str, samples: int = SAMPLES) -> float | None:
    """The fastest of `samples` `SELECT 1` round trips to the catalog's PostgreSQL, in milliseconds.

    None when it cannot be measured (unreachable, refused): the lake's attach then reports why, with the catalog
    named and the password left out; nothing here is shown to anyone.
    """
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS) as conn:
            times = []
            for _ in range(samples):
                started = time.perf_counter()
                conn.execute("SELECT 1").fetchone()
                times.append(time.perf_counter() - started)
    except psycopg.Error:
        return None
    return min(times) * 1000.0
