"""Issue 13, probes: a real HealthServer answers /health and /metrics promptly whatever PostgreSQL does (down, a
table locked, connections killed as by a restart), from its background reading. Bounds are generous: the old server
took ~30 s per request with PostgreSQL down; these allow 5 s."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

from psycopg_pool import ConnectionPool

from flusher.app.health import HealthProbe, HealthServer
from flusher.hot import make_pool
from tests.helpers import write_config

BOUND_SECONDS = 5


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once closed


def _get(port: int, path: str) -> tuple[int, str, float]:
    """(status, body, seconds it took)."""
    start = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60) as response:
            status, body = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read().decode()
    return status, body, time.monotonic() - start


def _health_until(port: int, check, timeout: float = 60) -> dict:
    """Polls /health until check(body); every answer within BOUND_SECONDS."""
    deadline = time.monotonic() + timeout
    while True:
        status, text, took = _get(port, "/health")
        assert took < BOUND_SECONDS, f"/health took {took:.1f} s"
        body = {"http_status": status, **json.loads(text)}
        if check(body):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


def test_with_postgresql_and_the_catalog_down_health_and_metrics_answer_promptly(hot):
    port = _closed_port()
    hot.config = write_config(
        hot,
        postgres={"host": "127.0.0.1", "port": port},
        ducklake={"catalog_path": f"host=127.0.0.1 port={port} dbname=catalog_db user=lake password=sekret"},
    )
    settings = hot.settings()
    # make_pool refuses a server that is down; a running service's pool meets it later, like this one.
    pool = ConnectionPool(settings.postgres.conninfo(), min_size=1, kwargs={"autocommit": True}, open=True)
    server = HealthServer(HealthProbe(settings, pool, lambda: None, interval_seconds=600), "127.0.0.1", 0)
    server.start()
    try:
        body = _health_until(server.port, lambda b: any("unreachable" in r for r in b["reasons"]))
        assert body["http_status"] == 503 and body["lag_ledgers"] is None and body["flush_count"] is None, body
        assert any(r.startswith("PostgreSQL ") and f"127.0.0.1:{port}" in r for r in body["reasons"]), body
        assert any(f"DuckLake catalog lake@127.0.0.1:{port}/catalog_db unreachable" in r for r in body["reasons"])
        assert body["checked_at"] and body["state_age_seconds"] is not None
        assert "sekret" not in json.dumps(body)
        status, metrics, took = _get(server.port, "/metrics")
        assert took < BOUND_SECONDS and status == 200
        assert "flusher_up 0.0" in metrics and "flusher_lag_ledgers" not in metrics, metrics
    finally:
        server.stop()
        pool.close()


def test_a_locked_state_table_and_killed_connections_keep_the_answers_prompt_and_true(hot):
    hot.load(1, 5)
    hot.config = write_config(hot, service={"probe_refresh_seconds": 0.5})
    settings = hot.settings()
    with make_pool(settings.postgres) as pool:
        server = HealthServer(HealthProbe(settings, pool, lambda: None, interval_seconds=600), "127.0.0.1", 0)
        server.start()
        try:
            body = _health_until(server.port, lambda b: b["http_status"] == 200)
            assert body["lag_ledgers"] == 5, body

            with hot.connect() as locker, locker.transaction():  # someone holds the state table: reads wait 3 s
                locker.execute("LOCK TABLE flusher_state.runs IN ACCESS EXCLUSIVE MODE")
                body = _health_until(server.port, lambda b: any("did not answer within" in r for r in b["reasons"]))
                assert body["http_status"] == 503 and body["lag_ledgers"] is None, body
            _health_until(server.port, lambda b: b["http_status"] == 200)

            # As after a restart: every connection the pool and the catalog check hold dies. The next reading
            # retries on fresh ones, so no false 503.
            killed = hot.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )[0][0]
            assert killed >= 1
            server.probe.refresh()
            status, text, _ = _get(server.port, "/health")
            assert status == 200, text
        finally:
            server.stop()


def test_the_catalog_check_reopens_its_connection_after_it_died(hot):
    from flusher.app.probe_reader import CatalogCheck

    check = CatalogCheck(hot.settings())
    try:
        assert check.problem() is None
        pid = check.conn.info.backend_pid
        hot.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert check.problem() is None, "a dead connection is re-opened at once, not reported"
        assert check.conn.info.backend_pid != pid
    finally:
        check.close()


def test_runs_that_stopped_are_measured_from_the_last_run_that_did_not_fail(hot):
    from flusher.state import StateStore

    settings = hot.settings()
    with make_pool(settings.postgres) as pool:
        state = StateStore(pool, settings.flush.state_schema)
        state.ensure()
        empty = state.start_run(None)
        state.finish_run(empty, "empty", None, "hot buffer empty", vacuumed=False)  # a quiet hot buffer's run
        failed = state.start_run(None)
        state.finish_run(failed, "failed", None, "boom", vacuumed=False)
        summary = state.summary()
        assert summary.last_flush_time is None and summary.last_ok_run_time is not None
        ended = hot.execute("SELECT finished_at FROM flusher_state.runs WHERE batch_id = %s", (empty,))[0][0]
        assert summary.last_ok_run_time == ended, "the failed run does not count"

        probe = HealthProbe(settings, pool, lambda: None, interval_seconds=600)
        probe.refresh()
        assert not any(r.startswith("no flush has completed") for r in probe.health()[1]["reasons"])
        probe = HealthProbe(settings, pool, lambda: None, interval_seconds=0.2)  # 3 intervals: 0.6 s
        time.sleep(1)
        probe.refresh()
        status, body = probe.health()
        assert status == 503 and any(r.startswith("no flush has completed for") for r in body["reasons"]), body
