"""CPU seconds a local PostgreSQL has used: the postmaster, its live children, and its exited (reaped) children.

Wall time on a shared 2-core machine swings with other load; CPU seconds of client + server swing much less.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields after "pid (comm) ", so index 0 is field 3 (state)


def postgres_cpu_seconds(pgdata: Path) -> float:
    """Cumulative CPU of the server whose data folder is pgdata (0 when it is not running)."""
    try:
        postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    own = _stat(postmaster)
    if own is None:
        return 0.0
    ticks = sum(int(v) for v in own[11:15])  # utime, stime, cutime, cstime
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) and int(fields[1]) == postmaster:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / _TICK
