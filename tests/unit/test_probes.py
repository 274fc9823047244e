"""/health and /metrics answer from a snapshot read in the background: never waiting on a server, saying how old it
is, unknown (not 0) when unknown; flushes that stopped are a reason; the HTTP server drops idle sockets and bounds its
threads. A stub reader stands in for PostgreSQL: no servers. Time bounds are generous (seconds, not milliseconds)."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from flusher.app.health import HealthProbe, HealthServer, StateCollector
from flusher.app.probe_cache import Refresher
from flusher.app.probe_reader import Snapshot
from flusher.config import ConfigError, settings_from_mapping
from flusher.state import StateSummary

HANG_SECONDS = 30  # what a dead server used to cost every request
BOUND_SECONDS = 5  # generous: the answer must come from memory, in well under a second
RAW = {
    "postgres": {"host": "db", "database": "hot", "user": "u", "password": "pw"},
    "ducklake": {"catalog_path": "host=db dbname=catalog user=u", "data_path": "/tmp/lake"},
}
INTERVAL = 600


def _settings(**service):
    return settings_from_mapping({**RAW, "service": service} if service else RAW, "test.yaml", {})


def _summary(last_flush_time: datetime | None = None, watermark: int | None = 10) -> StateSummary:
    return StateSummary(
        flush_count=1 if last_flush_time else 0,
        failed_count=0,
        last_flush_time=last_flush_time,
        last_watermark=watermark,
        total_flushed=5,
        total_deleted=5,
        tables={},
        last_ok_run_time=last_flush_time,
    )


def _good(last_flush_time: datetime | None = None) -> Snapshot:
    return Snapshot(
        summary=_summary(last_flush_time or datetime.now(UTC)), hot_read=True, hot_min=1, hot_max=12, recent=[]
    )


class StubReader:
    """Returns `first` on the first read; later reads (or all, with hang_from=0) block up to HANG_SECONDS."""

    def __init__(self, first: Snapshot | None = None, hang_from: int = 1) -> None:
        self.first = first or _good()
        self.hang_from = hang_from
        self.calls = 0
        self.release = threading.Event()

    def read(self) -> Snapshot:
        self.calls += 1
        if self.calls > self.hang_from:
            self.release.wait(HANG_SECONDS)
        return self.first


def _probe(reader, **kwargs) -> HealthProbe:
    kwargs.setdefault("refresh_seconds", 0.05)
    return HealthProbe(_settings(), None, lambda: None, interval_seconds=INTERVAL, reader=reader, **kwargs)


def _metrics(probe: HealthProbe) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(probe))
    return generate_latest(registry).decode()


def _timed(call):
    start = time.monotonic()
    result = call()
    return result, time.monotonic() - start


def _wait_for(check, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_request_never_reads_it_answers_from_the_last_snapshot():
    reader = StubReader(hang_from=10**6)
    probe = _probe(reader)
    probe.refresh()
    assert reader.calls == 1
    for _ in range(20):
        status, body = probe.health()
        _metrics(probe)
    assert reader.calls == 1, "a request read the state itself"
    assert status == 200 and body["lag_ledgers"] == 2 and body["checked_at"].endswith("Z"), body
    assert 0 <= body["state_age_seconds"] < BOUND_SECONDS


def test_with_the_reader_hanging_the_answer_is_prompt_and_says_the_state_is_unknown():
    reader = StubReader(hang_from=1)
    probe = _probe(reader, stale_after_seconds=0.5)
    probe.start()
    try:
        _wait_for(lambda: reader.calls >= 2)  # the first read done, the second hanging for 30 s
        time.sleep(0.7)  # past stale_after
        (status, body), took = _timed(probe.health)
        assert took < BOUND_SECONDS
        assert status == 503 and any(r.startswith("state unknown for ") for r in body["reasons"]), body
        assert body["state_age_seconds"] >= 0.5 and body["flush_count"] == 1, "the last known state, with its age"
        text, took = _timed(lambda: _metrics(probe))
        assert took < BOUND_SECONDS and "flusher_up 0.0" in text and "flusher_state_age_seconds" in text
    finally:
        reader.release.set()
        probe.stop()


def test_before_the_first_reading_the_answer_is_prompt_not_read_yet_and_the_lag_unknown():
    reader = StubReader(hang_from=0)
    probe = _probe(reader)
    probe.start()
    try:
        _wait_for(lambda: reader.calls >= 1)
        (status, body), took = _timed(probe.health)
        assert took < BOUND_SECONDS
        assert status == 503 and body["reasons"][0].startswith("state not read yet"), body
        assert body["lag_ledgers"] is None and body["checked_at"] is None and body["flush_count"] is None
        text = _metrics(probe)
        assert "flusher_up 0.0" in text and "flusher_lag_ledgers" not in text
    finally:
        reader.release.set()
        probe.stop()


def test_a_request_right_after_start_waits_briefly_for_the_first_reading():
    probe = _probe(StubReader(hang_from=10**6))
    probe.start()
    try:
        status, body = probe.health()
        assert status == 200 and body["flush_count"] == 1, body
    finally:
        probe.stop()


def test_a_reader_that_raises_is_a_reason_not_a_crash():
    class Broken:
        def read(self) -> Snapshot:
            raise RuntimeError("boom")

    probe = _probe(Broken())
    probe.refresh()
    status, body = probe.health()
    assert status == 503 and "state check failed: boom" in body["reasons"], body


def test_the_lag_is_unknown_when_the_hot_buffer_was_not_read_and_zero_when_it_is_empty():
    down = Snapshot(problems=["PostgreSQL u@db:5432/hot unreachable: refused"])
    assert down.lag is None
    assert Snapshot(hot_read=True).lag == 0
    assert Snapshot(hot_read=True, hot_min=5, hot_max=9).lag == 5, "before the first flush: every ledger"
    probe = _probe(StubReader(first=down, hang_from=10**6))
    probe.refresh()
    status, body = probe.health()
    assert status == 503 and body["lag_ledgers"] is None and body["reasons"] == down.problems, body
    text = _metrics(probe)
    assert "flusher_up 0.0" in text and "flusher_lag_ledgers" not in text


@pytest.mark.parametrize(
    ("last_flush_ago", "up_for", "unhealthy"),
    [
        (timedelta(seconds=4 * INTERVAL), 0, True),
        (timedelta(seconds=2 * INTERVAL), 0, False),
        (None, 4 * INTERVAL, True),  # never flushed, up for 4 intervals
        (None, 60, False),  # never flushed, just started: time for a first flush
    ],
)
def test_flushes_that_stopped_are_a_reason(last_flush_ago, up_for, unhealthy):
    snap = _good()
    snap.summary = _summary(datetime.now(UTC) - last_flush_ago if last_flush_ago else None)
    probe = _probe(StubReader(first=snap, hang_from=10**6))
    probe.started -= up_for
    probe.refresh()
    status, body = probe.health()
    stalled = [r for r in body["reasons"] if r.startswith("no flush has completed")]
    assert bool(stalled) is unhealthy and (status == 503) is unhealthy, body
    if last_flush_ago:
        assert not unhealthy or stalled[0].startswith("no flush has completed for 40m0s, more than 3 schedule")


def test_the_next_flush_comes_from_the_background_reading_too():
    calls = []

    def next_flush():
        calls.append(1)
        return datetime.now(UTC) + timedelta(seconds=90)

    probe = HealthProbe(_settings(), None, next_flush, interval_seconds=INTERVAL, reader=StubReader(hang_from=10**6))
    probe.refresh()
    for _ in range(5):
        _, body = probe.health()
    assert len(calls) == 1 and body["next_flush_in"] in ("1m29s", "1m30s"), body


def test_the_refresher_rereads_on_its_own_and_stops():
    values = iter(range(10**6))
    refresher = Refresher(lambda: next(values), 0.01, "t")
    refresher.start()
    _wait_for(lambda: (refresher.latest() and refresher.latest().value or 0) >= 3)
    refresher.stop()
    with pytest.raises(ValueError):
        Refresher(lambda: 1, 0, "t")


def test_the_health_server_drops_an_idle_socket_and_bounds_its_threads():
    probe = _probe(StubReader(hang_from=10**6))
    probe.refresh()
    server = HealthServer(probe, "127.0.0.1", 0, max_threads=2, request_timeout_seconds=0.5)
    server.start()
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]
    try:
        _wait_for(lambda: server.httpd.slots._value == 0)  # both threads taken by clients sending nothing
        (response), took = _timed(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health", timeout=BOUND_SECONDS)
        )
        assert response.status == 200 and took >= 0.3, "the third waited for a thread, then was served"
        for conn in idle:
            conn.settimeout(BOUND_SECONDS)
            assert conn.recv(1024) == b"", "dropped after the request timeout"
    finally:
        for conn in idle:
            conn.close()
        server.stop()


def test_the_health_server_listens_on_loopback_unless_configured_and_refreshes_at_a_sane_pace():
    assert _settings().service.health_host == "127.0.0.1"
    assert _settings().service.probe_refresh_seconds == 5
    assert _settings(health_host="0.0.0.0").service.health_host == "0.0.0.0"
    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    assert "ENV FLUSHER_SERVICE_HEALTH_HOST=0.0.0.0" in dockerfile, "the image's probes come from outside it"
    for bad in (0, -1, 10_000):
        with pytest.raises(ConfigError, match="probe_refresh_seconds"):
            _settings(probe_refresh_seconds=bad)


def test_an_unreachable_server_gets_a_503_within_the_bound_through_http():
    reader = StubReader(hang_from=0)
    probe = _probe(reader)
    server = HealthServer(probe, "127.0.0.1", 0)
    server.start()
    try:
        start = time.monotonic()
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health", timeout=BOUND_SECONDS)
        assert info.value.code == 503 and time.monotonic() - start < BOUND_SECONDS
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=BOUND_SECONDS) as response:
            assert b"flusher_up 0.0" in response.read()
    finally:
        reader.release.set()
        server.stop()
