"""`make demo` on a fresh machine: an embedded PostgreSQL, a temporary Prefect server, one flush, nothing left."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest


@pytest.mark.slow  # its own PostgreSQL and Prefect server: among the longest tests, so scheduled early
def test_the_demo_flushes_every_table_and_removes_its_folder(tmp_path: Path):
    # A short TMPDIR: PostgreSQL's socket path must fit in 107 bytes, more than pytest's tmp_path leaves on a worker.
    scratch = Path(tempfile.mkdtemp(prefix="demo-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "FLUSHER_"))}
    env |= {
        "TMPDIR": str(scratch),  # the demo's folder goes here
        # PREFECT_HOME stays the session's (the reaper's mark); the temporary server gets a database of its own.
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path / 'demo-prefect.db'}",
    }
    try:
        done = subprocess.run(
            [sys.executable, "-m", "flusher.app.cli", "demo", "--ledgers", "20"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        left = list(scratch.glob("flusher-demo-*"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "21/21 tables ok" in done.stdout
    assert "rows in 21 lake tables" in done.stdout
    assert "flush-trades_row_v1 | Flushed" in done.stderr + done.stdout  # log lines name their task run
    assert not left, "the demo left its temporary folder behind"
