"""What a lake costs to read when its catalog is across a network: statements counted at a proxy (bench/proxy.py)
in front of the test PostgreSQL."""

from __future__ import annotations

import psycopg

from bench.proxy import running
from flusher.lake import LakeSession
from tests.helpers import ENABLED, write_config


def _catalog_through(hot, port: int) -> None:
    params = hot.params
    catalog = psycopg.conninfo.make_conninfo(host="127.0.0.1", port=port, user=params["user"], dbname=hot.database)
    hot.config = write_config(hot, ducklake={"catalog_path": catalog})


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


def test_a_run_reads_an_existing_lakes_tables_in_one_catalog_transaction(hot):
    with LakeSession(hot.settings(), attach_hot=False) as lake:
        lake.ensure_tables(ENABLED)
    hot.config = write_config(hot, ducklake={"parquet_row_group_size": 32768})  # a write option to check as well
    with running(f"{hot.params['host']}:{hot.params['port']}", 0, "postgres") as proxy:
        _catalog_through(hot, proxy.port)
        with LakeSession(hot.settings(), attach_hot=False) as lake:
            lake.ensure_write_options()
            proxy.reset()
            columns = lake.prepare_tables(ENABLED)
            stats = proxy.stats()
    assert set(columns) >= set(ENABLED)
    # Schema, columns, partitioning and options in one transaction (16 statements): each transaction more adds ~7
    # round trips (a pooled connection's checks, BEGIN, the snapshot lookup, COMMIT); one by one they sent 35.
    assert stats["statements"] <= 20, stats


def test_a_new_state_checks_the_lake_it_adopts_in_one_catalog_transaction(hot):
    from flusher.adoption import check_lake
    from flusher.hot import make_pool
    from flusher.state import StateStore

    with LakeSession(hot.settings(), attach_hot=False) as lake:
        lake.ensure_tables(ENABLED)
    with running(f"{hot.params['host']}:{hot.params['port']}", 0, "postgres") as proxy:
        _catalog_through(hot, proxy.port)
        settings = hot.settings()
        with make_pool(settings.postgres) as pool, LakeSession(settings, attach_hot=False) as lake:
            state = StateStore(pool, "flusher_state_probe")
            state.ensure()
            proxy.reset()
            identity = check_lake(state, lake)
            stats = proxy.stats()
            proxy.reset()
            check_lake(state, lake)  # every later run: the state has adopted the lake
            later = proxy.stats()
    assert identity.adopted, "an empty lake is adopted"
    # The head and the tables that may hold rows in one transaction, the commits since in one statement (one by
    # one they sent 24, half of them a pooled connection's checks and transaction ends).
    assert stats["statements"] <= 10, stats
    # An adopted state asks only for the commits since: one statement, not a DuckDB transaction of ~6.
    assert later["statements"] <= 1, later


def test_a_commits_snapshot_is_looked_up_in_one_catalog_statement(hot):
    from flusher.lake import COMMIT_AUTHOR
    from flusher.transfer import committed_snapshot

    info = '{"probe": "committed_snapshot"}'
    with running(f"{hot.params['host']}:{hot.params['port']}", 0, "postgres") as proxy:
        _catalog_through(hot, proxy.port)
        with LakeSession(hot.settings(), attach_hot=False) as lake:
            cur = lake.cursor()
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {lake.lake}.{lake.schema}")
            cur.execute(f"CREATE TABLE {lake.table('probe')} (x INTEGER)")
            cur.execute("BEGIN")
            cur.execute(f"INSERT INTO {lake.table('probe')} VALUES (1)")
            cur.execute(f"CALL {lake.lake}.set_commit_message(?, 'probe', extra_info => ?)", [COMMIT_AUTHOR, info])
            cur.execute("COMMIT")
            proxy.reset()
            first = committed_snapshot(lake, info)
            again = committed_snapshot(lake, info)  # the connection stays open for the run's next commits
            stats = proxy.stats()
    head = hot.execute("SELECT max(snapshot_id) FROM bronze_meta.ducklake_snapshot")[0][0]
    assert first == again == head
    # Through DuckDB each lookup was a transaction on the lake: ~6 statements (a pooled connection's checks, BEGIN,
    # the snapshot lookup, the query, COMMIT), 0.2 s per commit with the catalog 30 ms away.
    assert stats["statements"] <= 2, stats
