"""Catch-up: how far behind the hot buffer is, whether a capped flush should run again, and the progress so far.

Pure logic (no PostgreSQL, no Prefect): the bronze-catchup flow reads the numbers and runs ordinary capped flushes
(each one the whole protocol of DESIGN.md); this decides when to stop and what to show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

SECONDS_PER_LEDGER = 5.5  # Stellar closes a ledger every ~5-6 s


def ledgers_per_interval(interval_seconds: float) -> int:
    """How many ledgers close during one schedule interval: the backlog a scheduled flush takes in its stride."""
    return max(0, math.floor(interval_seconds / SECONDS_PER_LEDGER))


@dataclass(frozen=True)
class Backlog:
    """The hot buffer's ledger range (min/max of the watermark table) and the last flushed watermark."""

    hot_min: int | None
    hot_max: int | None
    watermark: int | None

    @property
    def ledgers_left(self) -> int:
        """Ledgers in the hot buffer above the last watermark (0 when it is empty or the watermark is ahead)."""
        if self.hot_max is None or self.hot_min is None:
            return 0
        below_first = self.hot_min - 1 if self.watermark is None else max(self.hot_min - 1, self.watermark)
        return max(0, self.hot_max - below_first)

    def caught_up(self, behind_ok: int) -> bool:
        return self.ledgers_left <= behind_ok


class Step(StrEnum):
    """What the loop does after a chunk."""

    CONTINUE = "continue"
    CAUGHT_UP = "caught up"
    STALLED = "stalled"


@dataclass(frozen=True)
class Chunk:
    """One capped flush as the loop saw it."""

    number: int
    rows: int
    seconds: float
    before: Backlog
    after: Backlog

    @property
    def advanced(self) -> bool:
        """The watermark moved up, or rows moved (late rows below the watermark move without moving it)."""
        return self.rows > 0 or (self.after.watermark or 0) > (self.before.watermark or 0)


def decide(chunk: Chunk, behind_ok: int) -> Step:
    """Caught up when at most `behind_ok` ledgers are left; stalled when a chunk moved nothing (a downstream
    consumer holding the watermark, another run holding the lock): running it again would change nothing."""
    if chunk.after.caught_up(behind_ok):
        return Step.CAUGHT_UP
    return Step.CONTINUE if chunk.advanced else Step.STALLED


@dataclass
class Progress:
    """The catch-up so far: rows moved, ledgers left, rates and an ETA, measured on the wall clock (pauses too)."""

    start: Backlog
    behind_ok: int
    chunks: list[Chunk] = field(default_factory=list)
    elapsed: float = 0.0  # seconds since the first chunk started, pauses included

    @property
    def current(self) -> Backlog:
        return self.chunks[-1].after if self.chunks else self.start

    @property
    def rows(self) -> int:
        return sum(c.rows for c in self.chunks)

    @property
    def ledgers_done(self) -> int:
        """Ledgers the watermark moved past since the start."""
        before = self.start.watermark if self.start.watermark is not None else (self.start.hot_min or 1) - 1
        after = self.current.watermark
        return max(0, after - before) if after is not None else 0

    @property
    def to_go(self) -> int:
        """Ledgers still to move before the backlog is within `behind_ok`."""
        return max(0, self.current.ledgers_left - self.behind_ok)

    @property
    def percent(self) -> float:
        """Share of the way to caught-up: ledgers done over done + to go (the target moves as the ingester writes)."""
        total = self.ledgers_done + self.to_go
        return 100.0 if total == 0 else 100.0 * self.ledgers_done / total

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Time to caught-up at the net rate the backlog shrank (new ledgers count against it); None: not shrinking."""
        if self.to_go == 0:
            return 0.0
        shrunk = self.start.ledgers_left - self.current.ledgers_left
        if self.elapsed <= 0 or shrunk <= 0:
            return None
        return self.to_go * self.elapsed / shrunk

    def record(self, chunk: Chunk, elapsed: float) -> Step:
        self.chunks.append(chunk)
        self.elapsed = elapsed
        return decide(chunk, self.behind_ok)

    def line(self) -> str:
        """One progress line, e.g. 'chunk 2: 1200 rows in 3.1s, watermark 20; 10 ledgers left ...'."""
        head = f"chunk {self.chunks[-1].number}: {self.chunks[-1].rows} rows in {self.chunks[-1].seconds:.1f}s, "
        return head + self.summary()

    def summary(self) -> str:
        now = self.current
        hot = f"hot {now.hot_min}..{now.hot_max}" if now.hot_max is not None else "hot buffer empty"
        head = f"watermark {now.watermark}; {now.ledgers_left} ledgers left ({hot}, target <= {self.behind_ok})"
        if not self.chunks:
            return head
        return (
            f"{head}; {self.rows} rows moved, {self.rows_per_second:.0f} rows/s; "
            f"{self.percent:.0f}%, ETA {format_eta(self.eta_seconds)}"
        )


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "unknown (the backlog is not shrinking)"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
