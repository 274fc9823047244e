"""What every variant subprocess shares: its spec, phase timing, and the result file."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def read_spec() -> dict[str, Any]:
    return json.loads(Path(sys.argv[1]).read_text())


class Phases:
    """Wall seconds per named phase, measured with perf_counter."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def time(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


def write_result(spec: dict[str, Any], wall: float, phases: Phases, **extra: Any) -> None:
    Path(spec["result"]).write_text(json.dumps({"wall": wall, "phases": phases.seconds} | extra))


# The watermark query of the bare-SQL variants (the flusher's is in flusher/hot.py).
WATERMARK_SQL = "SELECT max(sequence) FROM public.ledgers_row_v2"


@dataclass
class BareSqlRun:
    """What the bare-SQL variants (ceiling, seed pattern) start from; the clock starts when it is made."""

    spec: dict[str, Any]
    settings: Any  # flusher.config.Settings; imported lazily, the dlt variant's venv has no flusher
    tables: dict[str, str]
    phases: Phases = field(default_factory=Phases)
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def begin(cls) -> BareSqlRun:
        from flusher.config import load_settings

        spec = read_spec()
        return cls(spec, load_settings(spec["config"]), spec["tables"])

    def finish(self, **extra: Any) -> None:
        write_result(self.spec, time.perf_counter() - self.started, self.phases, **extra)
