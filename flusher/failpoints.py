"""Named points where tests make the process die or fail, to prove the protocol survives a crash anywhere.

FLUSHER_FAILPOINTS="after_lake_commit:transactions_row_v2=kill,in_delete=raise,after_mark=sleep=3" arms points
(`until=/path` waits until that file exists, so a test decides when the process goes on); a point with no
":table" fires for every table. Unset (always, in production) this costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import time

ENV = "FLUSHER_FAILPOINTS"


class InjectedFault(RuntimeError):
    """Raised by a failpoint armed with `raise`."""


def _armed() -> dict[str, str]:
    spec = os.environ.get(ENV, "")
    points = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, action = item.partition("=")
        points[name] = action or "kill"
    return points


def hit(point: str, table: str | None = None) -> None:
    """Fire the failpoint `point` (optionally for one table) if the environment arms it."""
    if ENV not in os.environ:
        return
    armed = _armed()
    action = armed.get(f"{point}:{table}") if table else None
    action = action or armed.get(point) or ""
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action.startswith("sleep="):
        time.sleep(float(action.removeprefix("sleep=")))
    elif action.startswith("until="):
        while not os.path.exists(action.removeprefix("until=")):
            time.sleep(0.05)
    elif action == "raise":
        raise InjectedFault(f"injected fault at {point}" + (f" ({table})" if table else ""))
