"""Stops what a test process started when that process dies without its teardown.

A `pytest -n 2` run killed on its main process leaves its workers' PostgreSQL and Prefect servers (and any child a
test started) running: fixture teardown never runs. Every process a test session starts inherits `PREFECT_HOME`
inside the session's own temporary folder (conftest sets it before anything starts), so that variable marks them.
The reaper, a small process of its own, waits for the session's process to end, then stops every process still
carrying the mark (SIGTERM, then SIGKILL after a grace period) and removes the folder. After a normal end there is
nothing left to stop and it simply exits.

Run as `python -m tests.reaper PID FOLDER`; `start(folder)` does that for the current process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK_VARIABLE = "PREFECT_HOME"


def mark(folder: Path | str) -> bytes:
    """The environment entry every process of the session carries (as /proc/PID/environ holds it)."""
    return f"{MARK_VARIABLE}={Path(folder) / 'prefect'}".encode()


def _is_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, which only waits to be reaped, counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def marked_processes(marker: bytes) -> list[int]:
    """Processes (other than this one) whose environment holds `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if marker in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def _signal(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def reap(marker: bytes, grace_seconds: float = 5.0) -> list[int]:
    """Stop every process carrying `marker`: SIGTERM, then SIGKILL for those still running after the grace period."""
    pids = marked_processes(marker)
    _signal(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and any(_is_alive(pid) for pid in pids):
        time.sleep(0.1)
    _signal([pid for pid in marked_processes(marker) if _is_alive(pid)], signal.SIGKILL)
    return pids


def watch(parent: int, folder: Path, poll_seconds: float = 0.5) -> None:
    """Wait for `parent` to end, then stop what it left and remove `folder`."""
    while _is_alive(parent):
        time.sleep(poll_seconds)
    reap(mark(folder))
    shutil.rmtree(folder, ignore_errors=True)


def start(folder: Path) -> subprocess.Popen:
    """Start a reaper for the current process and `folder`; it carries no mark itself and outlives a kill."""
    env = {k: v for k, v in os.environ.items() if k != MARK_VARIABLE}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reaper", str(os.getpid()), str(folder)],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


if __name__ == "__main__":
    watch(int(sys.argv[1]), Path(sys.argv[2]))
