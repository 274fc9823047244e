"""GET /health (the Go service's JSON, truthful) and GET /metrics (Prometheus), both read from PostgreSQL per request.

Flow runs execute in subprocesses, so nothing is counted in memory: every figure comes from the state tables,
and a restart loses nothing.
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
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg import sql
from psycopg_pool import ConnectionPool

from flusher.config import ConfigError, Settings, connection_reason
from flusher.downstream import ConsumerReading, read_all
from flusher.registry import WATERMARK_COLUMN, WATERMARK_TABLE, selected_tables, unselected_tables
from flusher.secrets import mask, mask_any, remember_settings
from flusher.state import StateStore, StateSummary
from flusher.statuses import RunStatus
from flusher.stuck import StuckRows, find_stuck_rows

log = logging.getLogger(__name__)
PROBE_TIMEOUT_SECONDS = 3  # a probe must answer quickly even when a consumer's host drops packets
# Stuck rows are counted up to this many per table and kind on each request, so a scrape stays cheap.
STUCK_ROWS_CAP = 100_000
DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0]


@dataclass
class Snapshot:
    """Everything /health and /metrics report, read in one go."""

    summary: StateSummary | None = None
    recent: list[str] = field(default_factory=list)
    hot_min: int | None = None
    hot_max: int | None = None
    hot_rows: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    vacuums: int = 0
    flush_durations: dict[str, tuple[list[int], float, int]] = field(default_factory=dict)
    delete_durations: dict[str, tuple[list[int], float, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    consumers: list[ConsumerReading] = field(default_factory=list)
    stuck: StuckRows = field(default_factory=StuckRows)

    def consumer_lag(self, reading: ConsumerReading) -> int | None:
        """Hot ledgers past a consumer's checkpoint; for an unusable one, the flusher's own lag (its runs skip)."""
        if reading.problem or reading.checkpoint is None:
            return self.lag
        return 0 if self.hot_max is None else max(0, self.hot_max - reading.checkpoint)

    @property
    def lag(self) -> int | None:
        """Ledgers in the hot buffer beyond the last flushed watermark (all of them before the first flush)."""
        if self.hot_max is None:
            return 0
        last = self.summary.last_watermark if self.summary else None
        return self.hot_max - (last if last is not None else self.hot_min - 1)


def go_duration(seconds: float) -> str:
    """8m15s, as Go's time.Duration prints (what the Go service's next_flush_in looked like)."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "") + f"{secs}s"


class HealthProbe:
    """Reads the flusher's state, the hot buffer and the catalog; decides healthy or not."""

    def __init__(self, settings: Settings, pool: ConnectionPool, next_flush: Callable[[], datetime | None]) -> None:
        self.settings = remember_settings(settings)  # /health and /metrics are served to anyone who can connect
        self.pool = pool
        self.state = StateStore(pool, settings.flush.state_schema)
        self.specs = selected_tables(settings.flush)
        self.tables = [t.name for t in self.specs]
        self.unselected = unselected_tables(settings.flush)  # known tables an explicit flush.tables leaves out
        self.next_flush = next_flush
        self.started = time.monotonic()
        self._state_ready = False

    def snapshot(self, with_durations: bool = False) -> Snapshot:
        snap = Snapshot()
        try:
            self._read_state(snap, with_durations)
        except (psycopg.Error, OSError) as exc:
            snap.problems.append(
                f"PostgreSQL {self.settings.postgres.describe()} unreachable: {connection_reason(exc)}"
            )
        problem = self._catalog_problem()
        if problem:
            snap.problems.append(problem)
        snap.consumers = read_all(self.settings.downstream, PROBE_TIMEOUT_SECONDS)
        return snap

    def _read_state(self, snap: Snapshot, with_durations: bool) -> None:
        if not self._state_ready:  # a service may start before the first flush created the state tables
            self.state.ensure()
            self._state_ready = True
        snap.summary = self.state.summary()
        snap.recent = self.state.recent_statuses(self.settings.service.unhealthy_after_failures)
        snap.failures = self.state.failures_by_table()
        snap.vacuums = self.state.vacuum_count()
        if with_durations:
            snap.flush_durations = self.state.duration_buckets("flush_seconds", DURATION_BUCKETS)
            snap.delete_durations = self.state.duration_buckets("delete_seconds", DURATION_BUCKETS)
        schema = self.settings.postgres.schema_name
        with self.pool.connection() as conn:
            snap.hot_min, snap.hot_max = conn.execute(
                sql.SQL("SELECT min({c}), max({c}) FROM {t}").format(
                    c=sql.Identifier(WATERMARK_COLUMN), t=sql.Identifier(schema, WATERMARK_TABLE)
                )
            ).fetchone()
            snap.hot_rows = dict(
                conn.execute(
                    "SELECT relname, n_live_tup FROM pg_stat_user_tables WHERE schemaname = %s AND relname = ANY(%s)",
                    (schema, self.tables),
                ).fetchall()
            )
            last = snap.summary.last_watermark if snap.summary else None
            snap.stuck = find_stuck_rows(conn, schema, self.specs, self.unselected, last, cap=STUCK_ROWS_CAP)

    def _catalog_problem(self) -> str | None:
        try:
            with psycopg.connect(self.settings.ducklake.catalog_conninfo(), connect_timeout=3) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:  # libpq's reason names host and port; the catalog's database is ours to add
            return f"DuckLake catalog {self.settings.ducklake.describe_catalog()} unreachable: {connection_reason(exc)}"
        return None

    def health(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body): 200 healthy, 503 with reasons when flushes fail, lag grows or a server is down."""
        snap = self.snapshot()
        service = self.settings.service
        reasons = list(snap.problems) + snap.stuck.reasons()
        limit = service.unhealthy_after_failures
        if len(snap.recent) >= limit and all(s != RunStatus.COMPLETED for s in snap.recent):
            reasons.append(f"the last {limit} flushes failed")
        lag = snap.lag
        if lag is not None and lag > service.max_lag_ledgers:
            reasons.append(f"lag of {lag} ledgers exceeds service.max_lag_ledgers ({service.max_lag_ledgers})")
        warnings, downstream = self._downstream(snap, reasons)
        summary = snap.summary
        upcoming = self._next_flush_in()
        body = {
            "status": "unhealthy" if reasons else "healthy",
            "flush_count": summary.flush_count if summary else None,
            "last_flush_time": summary.last_flush_time.astimezone(UTC).isoformat().replace("+00:00", "Z")
            if summary and summary.last_flush_time
            else None,
            "last_watermark": summary.last_watermark if summary else None,
            "total_flushed": summary.total_flushed if summary else None,
            "uptime_seconds": int(time.monotonic() - self.started),
            "next_flush_in": go_duration(upcoming) if upcoming is not None else None,
            "lag_ledgers": lag,
            "reasons": reasons,
        }
        if self.settings.downstream:
            body["warnings"] = warnings
            body["downstream"] = downstream
        return (503 if reasons else 200), mask_any(body)

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
        try:
            when = self.next_flush()
        except Exception as exc:  # noqa: BLE001 - the API being down must not break /health
            log.debug("next scheduled run unknown: %s", exc)
            return None
        return None if when is None else max(0.0, (when - datetime.now(UTC)).total_seconds())


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
        snap = self.probe.snapshot(with_durations=True)
        yield GaugeMetricFamily(
            "flusher_up", "1 when PostgreSQL and the catalog answer", value=0 if snap.problems else 1
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
        yield GaugeMetricFamily(
            "flusher_lag_ledgers", "Hot MAX(sequence) minus the last flushed watermark", value=snap.lag or 0
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
                {r.name: snap.consumer_lag(r) or 0 for r in snap.consumers},
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


class HealthServer:
    """The HTTP endpoint, in a daemon thread."""

    def __init__(self, probe: HealthProbe, host: str, port: int) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StateCollector(probe))
        handler = _handler(probe, registry)
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:  # a config mistake (or another process), not a crash: name the key to change
            raise ConfigError(listen_problem(host, port, exc)) from None
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="health-server", daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


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


def _handler(probe: HealthProbe, registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
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
