"""GET /health (the Go service's JSON, truthful) and GET /metrics (Prometheus), both answered from memory.

Flow runs execute in subprocesses, so nothing is counted in memory: every figure comes from the state tables,
and a restart loses nothing. They are read in the background every service.probe_refresh_seconds
(flusher.app.probe_reader, flusher.app.probe_cache); a request answers from the last reading and says how old it
is, so it never waits on PostgreSQL, the catalog, a consumer or the Prefect API, whichever of them is down.
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg_pool import ConnectionPool

from flusher.app.probe_cache import Reading, Refresher
from flusher.app.probe_reader import DURATION_BUCKETS, STUCK_ROWS_CAP, Snapshot, StateReader
from flusher.config import ConfigError, Settings
from flusher.secrets import mask, mask_any, remember_settings
from flusher.statuses import RunStatus

log = logging.getLogger(__name__)
# A request waits (on an event, no I/O) this long for the very first reading, so a probe right after start-up gets
# the real state rather than "not read yet"; well inside the 2 s a probe allows.
FIRST_READ_WAIT_SECONDS = 1.5
STALE_INTERVALS = 3  # the snapshot is unknown after 3 refreshes (plus one read's budget); a flush after 3 intervals
REQUEST_TIMEOUT_SECONDS = 5  # a client that sends nothing for this long is dropped (a half-open socket)
MAX_REQUEST_THREADS = 32  # connections served at once; more wait for a thread (up to the request timeout)


class SnapshotReader(Protocol):
    """What reads a Snapshot (StateReader; a stub in tests)."""

    def read(self) -> Snapshot: ...


@dataclass
class Current:
    """The snapshot a request answers from, how old it is, and why it cannot be trusted (if so)."""

    snap: Snapshot
    checked_at: datetime | None = None
    age: float | None = None
    reasons: list[str] = field(default_factory=list)


def go_duration(seconds: float) -> str:
    """8m15s, as Go's time.Duration prints (what the Go service's next_flush_in looked like)."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "") + f"{secs}s"


class HealthProbe:
    """Decides healthy or not from the last background reading of the state, the hot buffer and the catalog.

    interval_seconds is the flush schedule's: /health turns unhealthy when the last completed flush is older than
    STALE_INTERVALS of it (or, before any flush ever completed, when the service has been up that long).
    """

    def __init__(
        self,
        settings: Settings,
        pool: ConnectionPool | None,
        next_flush: Callable[[], datetime | None],
        *,
        interval_seconds: float,
        reader: SnapshotReader | None = None,
        refresh_seconds: float | None = None,
        stale_after_seconds: float | None = None,
    ) -> None:
        self.settings = remember_settings(settings)  # /health and /metrics are served to anyone who can connect
        self.interval_seconds = interval_seconds
        self.reader = reader if reader is not None else StateReader(settings, pool)
        refresh = refresh_seconds or settings.service.probe_refresh_seconds
        self.state: Refresher[Snapshot] = Refresher(self.reader.read, refresh, "health-state")
        self.schedule: Refresher[datetime | None] = Refresher(next_flush, refresh, "health-schedule")
        budget = getattr(self.reader, "budget_seconds", lambda: 0.0)()
        self.stale_after = stale_after_seconds or STALE_INTERVALS * refresh + budget
        self.started = time.monotonic()

    def start(self) -> None:
        """Read in the background from now on."""
        self.state.start()
        self.schedule.start()

    def stop(self) -> None:
        self.state.stop()
        self.schedule.stop()
        close = getattr(self.reader, "close", None)
        if close is not None and not self.state._lock.locked():  # a read in flight keeps its connection to the end
            close()

    def refresh(self) -> None:
        """Read now, in this thread (the CLI and tests; the server reads in the background)."""
        self.state.refresh()
        self.schedule.refresh()

    def current(self) -> Current:
        """The last snapshot and its age; reasons when there is none yet, it failed or it is too old. No I/O."""
        reading = self.state.latest(FIRST_READ_WAIT_SECONDS)
        if reading is None:
            waited = time.monotonic() - self.state.started_monotonic
            return Current(Snapshot(), reasons=[f"state not read yet: the first check has run for {waited:.0f} s"])
        current = Current(reading.value or Snapshot(), reading.finished_at, reading.age())
        if reading.error is not None:
            current.reasons.append(f"state check failed: {reading.error}")
        if current.age > self.stale_after:
            current.reasons.append(
                f"state unknown for {current.age:.0f} s: the last check finished at {_iso(reading.finished_at)} "
                f"and the next has not (more than {self.stale_after:.0f} s)"
            )
        return current

    def health(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body): 200 healthy, 503 with reasons when flushes fail or stop, lag grows, a server is
        down or the state is unknown."""
        current = self.current()
        snap = current.snap
        service = self.settings.service
        reasons = current.reasons + list(snap.problems) + snap.stuck.reasons()
        limit = service.unhealthy_after_failures
        if len(snap.recent) >= limit and all(s != RunStatus.COMPLETED for s in snap.recent):
            reasons.append(f"the last {limit} flushes failed")
        stalled = self._flush_age_reason(snap)
        if stalled:
            reasons.append(stalled)
        lag = snap.lag
        if lag is not None and lag > service.max_lag_ledgers:
            reasons.append(f"lag of {lag} ledgers exceeds service.max_lag_ledgers ({service.max_lag_ledgers})")
        warnings, downstream = self._downstream(snap, reasons)
        summary = snap.summary
        upcoming = self._next_flush_in()
        body = {
            "status": "unhealthy" if reasons else "healthy",
            "flush_count": summary.flush_count if summary else None,
            "last_flush_time": _iso(summary.last_flush_time) if summary and summary.last_flush_time else None,
            "last_watermark": summary.last_watermark if summary else None,
            "total_flushed": summary.total_flushed if summary else None,
            "uptime_seconds": int(time.monotonic() - self.started),
            "next_flush_in": go_duration(upcoming) if upcoming is not None else None,
            "lag_ledgers": lag,
            "checked_at": _iso(current.checked_at) if current.checked_at else None,
            "state_age_seconds": round(current.age, 1) if current.age is not None else None,
            "reasons": reasons,
        }
        if self.settings.downstream:
            body["warnings"] = warnings
            body["downstream"] = downstream
        return (503 if reasons else 200), mask_any(body)

    def _flush_age_reason(self, snap: Snapshot) -> str | None:
        """Runs stopped: the last run that ended without failing (flushed, had nothing new, or was held back by a
        downstream consumer) is older than STALE_INTERVALS schedule intervals, or none ever did and the service has
        been up that long (a fresh install gets that long for its first)."""
        if snap.summary is None:  # unknown: the state was not read, and that is a reason of its own
            return None
        bound = STALE_INTERVALS * self.interval_seconds
        last = snap.summary.last_ok_run_time
        if last is not None:
            age = (datetime.now(UTC) - last).total_seconds()
            if age > bound:
                return (
                    f"no flush has completed for {go_duration(age)}, more than {STALE_INTERVALS} schedule intervals "
                    f"({go_duration(bound)}): is a run stuck, or the schedule stopped?"
                )
            return None
        up = time.monotonic() - self.started
        if up > bound:
            return (
                f"no flush has completed in the {go_duration(up)} since the service started, more than "
                f"{STALE_INTERVALS} schedule intervals ({go_duration(bound)})"
            )
        return None

    def _downstream(self, snap: Snapshot, reasons: list[str]) -> tuple[list[str], list[dict[str, Any]]]:
        """Per consumer: its checkpoint and lag; a problem is a warning, and a reason (503) once its lag is too big."""
        warnings, rows = [], []
        for consumer, reading in zip(self.settings.downstream, snap.consumers, strict=False):
            lag = snap.consumer_lag(reading)
            bound = consumer.max_lag_ledgers or self.settings.service.max_lag_ledgers
            rows.append(
                {"name": reading.name, "checkpoint": reading.checkpoint, "lag_ledgers": lag, "problem": reading.problem}
            )
            if reading.problem:
                (reasons if lag is not None and lag > bound else warnings).append(
                    f"{reading.problem}; flushes are skipped"
                    + (f" and the lag of {lag} ledgers exceeds {bound}" if lag is not None and lag > bound else "")
                )
            elif lag is not None and lag > bound:
                reasons.append(
                    f"downstream consumer {reading.name} is {lag} ledgers behind the hot buffer "
                    f"(more than {bound}): rows are kept for it"
                )
        return warnings, rows

    def _next_flush_in(self) -> float | None:
        """Seconds to the deployment's next scheduled run, from the last background reading of the Prefect API."""
        reading: Reading[datetime | None] | None = self.schedule.latest()
        if reading is None or reading.error is not None or reading.value is None or reading.age() > self.stale_after:
            return None
        return max(0.0, (reading.value - datetime.now(UTC)).total_seconds())


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _go_counter(name: str, doc: str, value: float) -> Metric:
    """A Go-service counter under its exact old name (no _total), so dashboards keep working.

    prometheus_client would rename a counter's metadata to name_total, so these are exposed untyped.
    """
    metric = Metric(name, doc, "unknown")
    metric.add_sample(name, {}, value)
    return metric


class StateCollector(Collector):
    """Prometheus metrics computed from the state tables at scrape time."""

    def __init__(self, probe: HealthProbe) -> None:
        self.probe = probe

    def collect(self) -> Iterator[Metric]:
        current = self.probe.current()
        snap = current.snap
        up = not (current.reasons or snap.problems)
        yield GaugeMetricFamily(
            "flusher_up", "1 when PostgreSQL and the catalog answer (as of the last check, if fresh)", value=int(up)
        )
        if current.age is not None:
            yield GaugeMetricFamily(
                "flusher_state_age_seconds", "Seconds since the state these metrics show was read", value=current.age
            )
        summary = snap.summary
        if summary is None:
            return
        yield _go_counter("flusher_flush_count", "Total number of completed flush operations", summary.flush_count)
        yield _go_counter(
            "flusher_total_rows_flushed", "Total rows flushed across all operations", summary.total_flushed
        )
        yield GaugeMetricFamily(
            "flusher_last_watermark", "Last ledger sequence watermark flushed", value=summary.last_watermark or 0
        )
        last = summary.last_flush_time.timestamp() if summary.last_flush_time else 0
        yield GaugeMetricFamily(
            "flusher_last_flush_timestamp_seconds", "Unix time of the last completed flush", value=last
        )
        if snap.lag is not None:  # absent when unknown: a 0 would say "caught up"
            yield GaugeMetricFamily(
                "flusher_lag_ledgers", "Hot MAX(sequence) minus the last flushed watermark", value=snap.lag
            )
        yield _labelled(
            "flusher_table_rows_flushed_total",
            "Rows flushed to the lake, by table",
            "counter",
            {t: v["rows_flushed"] for t, v in summary.tables.items()},
        )
        yield _labelled(
            "flusher_table_rows_deleted_total",
            "Rows deleted from PostgreSQL, by table",
            "counter",
            {t: v["rows_deleted"] for t, v in summary.tables.items()},
        )
        yield _labelled(
            "flusher_table_failures_total", "Table flushes that ended failed, by table", "counter", snap.failures
        )
        yield _labelled(
            "flusher_hot_rows", "Live rows in the hot buffer, by table (PostgreSQL estimate)", "gauge", snap.hot_rows
        )
        yield _labelled(
            "flusher_unflushed_table_rows",
            f"Rows in known tables that flush.tables leaves out (counted up to {STUCK_ROWS_CAP})",
            "gauge",
            snap.stuck.unflushed,
        )
        stuck = GaugeMetricFamily(
            "flusher_stuck_rows",
            "Rows no flush moves as things stand, by table and reason "
            f"(null_ledger, waiting_for_ledgers, unflushed_table; counted up to {STUCK_ROWS_CAP})",
            labels=["table", "reason"],
        )
        for reason, rows in snap.stuck.by_kind().items():
            for table, count in sorted(rows.items()):
                stuck.add_metric([table, reason], count)
        yield stuck
        yield _labelled("flusher_vacuum_runs_total", "VACUUM ANALYZE passes run", "counter", {"": snap.vacuums})
        if snap.consumers:
            yield _by_consumer(
                "flusher_downstream_checkpoint",
                "Downstream consumer's checkpoint ledger (0: unknown)",
                {r.name: r.checkpoint or 0 for r in snap.consumers},
            )
            yield _by_consumer(
                "flusher_downstream_lag_ledgers",
                "Hot MAX(sequence) minus the consumer's checkpoint",
                {r.name: lag for r in snap.consumers if (lag := snap.consumer_lag(r)) is not None},
            )
            yield _by_consumer(
                "flusher_downstream_up",
                "1 when the consumer's checkpoint is readable and positive",
                {r.name: 0 if r.problem else 1 for r in snap.consumers},
            )
        yield _histogram("flusher_table_flush_seconds", "Seconds to flush one table", snap.flush_durations)
        yield _histogram(
            "flusher_table_delete_seconds", "Seconds to delete one table's flushed rows", snap.delete_durations
        )


def _labelled(name: str, doc: str, kind: str, values: dict[str, float]) -> Metric:
    base = name.removesuffix("_total") if kind == "counter" else name
    metric = Metric(base, doc, kind)
    for table, value in sorted(values.items()):
        metric.add_sample(name, {"table": table} if table else {}, float(value))
    return metric


def _by_consumer(name: str, doc: str, values: dict[str, float]) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=["consumer"])
    for consumer, value in sorted(values.items()):
        family.add_metric([consumer], float(value))
    return family


def _histogram(name: str, doc: str, data: dict[str, tuple[list[int], float, int]]) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=["table"])
    for table, (counts, total, n) in sorted(data.items()):
        buckets = [(str(b), c) for b, c in zip(DURATION_BUCKETS, counts, strict=False)] + [("+Inf", n)]
        family.add_metric([table], buckets, total)
    return family


class _BoundedServer(ThreadingHTTPServer):
    """One thread per connection, at most max_threads at once. A connection beyond that waits (in the listen
    backlog) for a thread, up to `wait_seconds` (twice the request timeout), then is closed unanswered; answers come
    from memory, so threads free up in milliseconds, and idle sockets are dropped after the request timeout: a flood
    cannot pile up threads."""

    daemon_threads = True
    block_on_close = False  # stop() must not wait for a client that sends nothing (it times out on its own)
    request_queue_size = 128  # the listen backlog: a burst waits here rather than being refused

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        max_threads: int,
        wait_seconds: float,
    ) -> None:
        super().__init__(address, handler)
        self.slots = threading.BoundedSemaphore(max_threads)
        self.wait_seconds = wait_seconds

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(timeout=self.wait_seconds):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class HealthServer:
    """The HTTP endpoint, in a daemon thread; start() also starts the probe's background reads."""

    def __init__(
        self,
        probe: HealthProbe,
        host: str,
        port: int,
        max_threads: int = MAX_REQUEST_THREADS,
        request_timeout_seconds: float = REQUEST_TIMEOUT_SECONDS,
    ) -> None:
        self.probe = probe
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StateCollector(probe))
        handler = _handler(probe, registry, request_timeout_seconds)
        try:
            # A waiting connection outlasts one request timeout: a thread held by an idle socket is freed by then
            # (waiting exactly as long lost that race on a busy machine, and the waiter was closed unanswered).
            self.httpd = _BoundedServer((host, port), handler, max_threads, 2 * request_timeout_seconds)
        except OSError as exc:  # a config mistake (or another process), not a crash: name the key to change
            raise ConfigError(listen_problem(host, port, exc)) from None
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="health-server", daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> None:
        self.probe.start()
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.probe.stop()


def listen_problem(host: str, port: int, exc: OSError) -> str:
    """Why /health cannot listen on host:port, naming the setting to change."""
    if isinstance(exc, socket.gaierror):
        return f"service.health_host: cannot listen on {host!r}: not an address of this machine ({exc.strerror})"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"service.health_port: {host}:{port} is already in use (another flusher, or another program, "
            "listens there); choose a free port (0 picks one) or stop the other process"
        )
    if exc.errno == errno.EACCES:
        return f"service.health_port: not allowed to listen on port {port} (below 1024 needs privileges); use 1024+"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"service.health_host: {host} is not an address of this machine; use 0.0.0.0, 127.0.0.1 or its own"
    return f"service.health_host/health_port: cannot listen on {host}:{port}: {exc.strerror or exc}"


def _handler(probe: HealthProbe, registry: CollectorRegistry, timeout_seconds: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = timeout_seconds  # each socket read and write: a half-open client is dropped, not kept

        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/health":
                status, body = probe.health()
                self._send(status, "application/json", json.dumps(body).encode())
            elif self.path.split("?")[0] == "/metrics":
                self._send(200, "text/plain; version=0.0.4; charset=utf-8", generate_latest(registry))
            else:
                self._send(404, "application/json", b'{"error": "try /health or /metrics"}')

        def _send(self, status: int, content_type: str, payload: bytes) -> None:
            payload = mask(payload.decode()).encode()  # reasons and labels quote servers' errors: never a secret
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("health server: " + format, *args)

    return Handler
