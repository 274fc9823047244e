"""What every variant subprocess shares: its spec, phase timing, and the result file."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
