"""A run measures how far the DuckLake catalog is and, unless flush.concurrency is set, flushes more tables at once
when it is far (flusher/round_trip.py, flusher.plan.flush_concurrency): measured, never guessed from the host name."""

from __future__ import annotations

import psycopg

from bench.proxy import running
from flusher.lake import LakeSession
from flusher.plan import REMOTE_CATALOG_CONCURRENCY
from flusher.resources import RunResources
from tests.helpers import ENABLED, write_config


def _catalog_through(hot, port: int, **flush) -> None:
    params = hot.params
    catalog = psycopg.conninfo.make_conninfo(host="127.0.0.1", port=port, user=params["user"], dbname=hot.database)
    hot.config = write_config(hot, ducklake={"catalog_path": catalog}, flush={"retries": 1, **flush})


def _pool_size(res: RunResources) -> int:
    lake = res._new_lake_session()
    try:
        return lake.cursor().execute("SELECT current_setting('pg_pool_max_connections')").fetchone()[0]
    finally:
        lake.close()


def test_a_catalog_on_loopback_keeps_one_table_per_core(hot, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    with RunResources.open(hot.settings()) as res:
        assert res.parallelism.flush == 2
        assert res.parallelism.catalog_rtt_ms is not None and res.parallelism.catalog_rtt_ms < 5


def test_a_distant_catalog_flushes_eight_tables_at_once_with_a_pool_to_match(hot, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    with running(f"{hot.params['host']}:{hot.params['port']}", 12, "postgres") as proxy:
        _catalog_through(hot, proxy.port)
        with RunResources.open(hot.settings()) as res:
            assert res.parallelism.flush == REMOTE_CATALOG_CONCURRENCY
            assert res.parallelism.catalog_rtt_ms >= 12
            assert _pool_size(res) == 2 * REMOTE_CATALOG_CONCURRENCY
        _catalog_through(hot, proxy.port, concurrency=3)  # configured: kept, and nothing is measured
        with RunResources.open(hot.settings()) as res:
            assert (res.parallelism.flush, res.parallelism.catalog_rtt_ms) == (3, None)


def test_tables_a_lake_creates_share_one_schema_version_so_a_first_read_stays_cheap(hot):
    with LakeSession(hot.settings(), attach_hot=False) as lake:
        lake.ensure_tables(ENABLED)
    versions = hot.execute("SELECT DISTINCT schema_version FROM bronze_meta.ducklake_inlined_data_tables")
    assert len(versions) == 1, f"one schema version for every table created at once, got {versions}"
    with running(f"{hot.params['host']}:{hot.params['port']}", 0, "postgres") as proxy:
        _catalog_through(hot, proxy.port)
        with LakeSession(hot.settings(), attach_hot=False) as lake:
            scan = "SELECT count(*) FROM {} WHERE snapshot_id IS NULL"  # what the certificate's read-back scans
            lake.cursor().execute(scan.format(lake.table("ledgers_row_v2"))).fetchone()  # loads the current catalog
            proxy.reset()
            lake.cursor().execute(scan.format(lake.table("effects_row_v1"))).fetchone()
            statements = proxy.stats()["statements"]
    # Tables created one commit each, then partitioned in another: ~50 (the whole catalog loaded as of both of the
    # table's versions, ~16 statements each), which is what made a remote flush's read-backs slow.
    assert statements <= 25, f"a first read of one table sent {statements} catalog statements"
