"""A value read in the background every few seconds, so a request answers from memory and never waits on a server.

/health and /metrics are asked by probes with short timeouts (Kubernetes, Docker's HEALTHCHECK, Prometheus): reading
PostgreSQL, the catalog or the Prefect API inside the request made each answer as slow as the slowest server, and with
one of them down no answer came in time at all. A Refresher reads in its own daemon thread; the request takes the
last reading and says how old it is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Reading(Generic[T]):
    """One finished read: its value (or the error it raised) and when it finished."""

    value: T | None
    error: BaseException | None
    finished_at: datetime  # wall clock, for the body
    finished_monotonic: float  # for ages: immune to clock steps

    def age(self, now: float | None = None) -> float:
        return max(0.0, (time.monotonic() if now is None else now) - self.finished_monotonic)


class Refresher(Generic[T]):
    """Calls read() every interval_seconds (after the previous read ends) in a daemon thread; latest() never blocks
    on read().
    """

    def __init__(self, read: Callable[[], T], interval_seconds: float, name: str) -> None:
        if interval_seconds <= 0:
            raise ValueError("interval_seconds must be > 0")
        self.read = read
        self.interval = interval_seconds
        self.name = name
        self._latest: Reading[T] | None = None
        self._first = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one read at a time (the thread, or refresh() called directly)
        self._thread: threading.Thread | None = None
        self.started_monotonic = time.monotonic()

    def start(self) -> None:
        if self._thread is None:
            self.started_monotonic = time.monotonic()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stops after the read in flight (not waited for: a hung read must not hang shutdown)."""
        self._stop.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.interval)

    def refresh(self) -> Reading[T]:
        """Read now (in the caller's thread) and keep the result."""
        with self._lock:
            try:
                value, error = self.read(), None
            except Exception as exc:  # noqa: BLE001 - kept and reported by whoever asks; the loop goes on
                log.debug("%s: read failed: %s", self.name, exc)
                value, error = None, exc
            reading = Reading(value, error, datetime.now(UTC), time.monotonic())
            self._latest = reading
            self._first.set()
            return reading

    def latest(self, wait_first_seconds: float = 0) -> Reading[T] | None:
        """The last finished reading; None before the first. While the thread runs and nothing was read yet, waits
        up to wait_first_seconds for the first one (an event, no I/O), so a probe right after start gets an answer.
        """
        if self._latest is None and wait_first_seconds > 0 and self.running:
            self._first.wait(wait_first_seconds)
        return self._latest
