"""Where a variant's memory goes, phase by phase: `BENCH_MEMORY_PROBE=1 python -m bench.run ...`.

The probe runs the variant module in its own process (`python -m bench.memprobe <module> <spec>`), so the variant's
file stays as it is. A thread samples, every SAMPLE_SECONDS:
- the process's RSS (/proc/self/status), what the benchmark's peak-RSS column reports at the end;
- DuckDB's own accounting, `sum(memory_usage_bytes) FROM duckdb_memory()` of every DuckDB the run opened (what
  `memory_limit` bounds); RSS minus that is Python, Prefect, the extensions' code and what DuckDB allocates
  outside its buffer manager;
and tags each sample with the innermost benchmark phase running then (the variant's Phases timers: watermark,
flush, delete, vacuum, report; `engine` outside the flow body). Per phase it keeps the peaks, plus a coarse
timeline, and adds both to the variant's result file under "memory".

BENCH_DUCKDB_SET="memory_limit=1GB;threads=2" applies `SET GLOBAL` settings to every DuckDB the variant opens
(through flusher.lake.connect_duckdb), for the benchmark only: a way to try a DuckDB setting the flusher's config
has no key for. A malformed value stops the run (exit 2) before anything is measured.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

SAMPLE_SECONDS = 0.05
TIMELINE_SECONDS = 1.0  # one timeline point per second: the peaks above are kept at full resolution
MIB = 1024 * 1024
_SETTING = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VALUE = re.compile(r"^[A-Za-z0-9_.\-+ ]+$")  # a number, a size (1GB), a word: no quotes, no semicolons


class BadSetting(ValueError):
    """BENCH_DUCKDB_SET cannot be applied; the message says which part and why."""


def parse_duckdb_set(text: str) -> list[tuple[str, str]]:
    """'memory_limit=1GB; threads=2' -> [('memory_limit', '1GB'), ('threads', '2')]; empty parts are ignored."""
    pairs = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not _SETTING.match(name) or not value or not _VALUE.match(value):
            raise BadSetting(
                f"BENCH_DUCKDB_SET: {part!r} is not name=value (a DuckDB setting name, a plain value such as 1GB "
                "or 2); separate settings with ';'"
            )
        pairs.append((name, value))
    return pairs


def set_statements(pairs: list[tuple[str, str]]) -> list[str]:
    """The SET GLOBAL statements for parsed pairs (values quoted as DuckDB string literals)."""
    return [f"SET GLOBAL {name} = '{value}'" for name, value in pairs]


def check_settings(statements: list[str]) -> None:
    """Try the statements on a throw-away DuckDB, so an unknown setting or a bad value stops the run at once."""
    with duckdb.connect() as db:
        for statement in statements:
            try:
                db.execute(statement)
            except duckdb.Error as exc:
                raise BadSetting(f"BENCH_DUCKDB_SET: {statement!r} failed: {exc}") from None


def rss_bytes() -> int:
    """This process's resident set size now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Probe:
    """The sampling thread and what it found; `phase()` marks what runs now."""

    def __init__(self) -> None:
        self._stack: list[str] = []
        self._dbs: weakref.WeakSet[Any] = weakref.WeakSet()
        self._stop = threading.Event()
        self.peaks: dict[str, dict[str, float]] = {}
        self.timeline: list[dict[str, Any]] = []
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="memprobe", daemon=True)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._stack.append(name)
        try:
            yield
        finally:
            self._stack.remove(name)

    def watch(self, db: Any) -> None:
        """Read this DuckDB's memory accounting from now on (until it is closed)."""
        self._dbs.add(db)

    def _duckdb_bytes(self) -> int | None:
        total, seen = 0, False
        for db in list(self._dbs):
            try:
                with db.cursor() as cur:
                    total += cur.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()[0] or 0
                seen = True
            except duckdb.Error:  # closed meanwhile, or busy shutting down: not this sample's business
                continue
        return total if seen else None

    def sample(self) -> dict[str, Any]:
        point: dict[str, Any] = {
            "t": round(time.perf_counter() - self._started, 2),
            "phase": self._stack[-1] if self._stack else "engine",
            "rss": rss_bytes(),
            "duckdb": self._duckdb_bytes(),
        }
        return point

    def _record(self, point: dict[str, Any]) -> None:
        peaks = self.peaks.setdefault(point["phase"], {})
        for key in ("rss", "duckdb"):
            if point.get(key) is not None:
                peaks[key] = max(peaks.get(key, 0), point[key])
        if not self.timeline or point["t"] - self.timeline[-1]["t"] >= TIMELINE_SECONDS:
            self.timeline.append(point)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._record(self.sample())

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        self._record(self.sample())
        return {"peaks_mib": self.peaks_mib(), "timeline": self.timeline, "sample_seconds": SAMPLE_SECONDS}

    def peaks_mib(self) -> dict[str, dict[str, float]]:
        return {phase: {k: round(v / MIB, 1) for k, v in peaks.items()} for phase, peaks in self.peaks.items()}


def install(probe: Probe, statements: list[str], patch: Callable[[object, str, Any], None] = setattr) -> None:
    """Hook the probe into the flusher's DuckDB sessions and the variant's phase timers (`patch`: how an attribute
    is replaced)."""
    import flusher.lake as lake
    from bench.variants.common import Phases

    connect = lake.connect_duckdb

    def connect_and_watch(*args: Any, **kwargs: Any) -> Any:
        db = connect(*args, **kwargs)
        for statement in statements:
            db.execute(statement)
        probe.watch(db)
        return db

    patch(lake, "connect_duckdb", connect_and_watch)
    timer = Phases.time

    @contextmanager
    def time_and_tag(self: Phases, name: str) -> Iterator[None]:
        with probe.phase(name), timer(self, name):
            yield

    patch(Phases, "time", time_and_tag)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m bench.memprobe <variant module> <spec.json>", file=sys.stderr)
        return 2
    try:
        statements = set_statements(parse_duckdb_set(os.environ.get("BENCH_DUCKDB_SET", "")))
        check_settings(statements)
    except BadSetting as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    module, spec = argv
    probe = Probe()
    install(probe, statements)
    probe.start()
    sys.argv = [module, spec]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        memory = probe.stop()
        result = Path(json.loads(Path(spec).read_text())["result"])
        if result.exists():
            result.write_text(json.dumps(json.loads(result.read_text()) | {"memory": memory}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
