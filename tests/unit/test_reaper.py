"""The reaper: a test session killed without its teardown leaves no process behind (no servers needed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.reaper import MARK_VARIABLE, ROOT

SLEEP = [sys.executable, "-c", "import time; time.sleep(120)"]
# A server that ignores SIGTERM, as a stuck one might: the reaper must still end it.
STUBBORN = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"]


def test_a_killed_session_leaves_no_marked_process_and_no_folder(tmp_path):
    folder = tmp_path / "session"
    (folder / "prefect").mkdir(parents=True)
    marked = {**os.environ, MARK_VARIABLE: str(folder / "prefect")}
    session = subprocess.Popen(SLEEP, env=marked)  # stands for the pytest process
    server = subprocess.Popen(STUBBORN, env=marked, start_new_session=True)  # what the session started
    bystander = subprocess.Popen(SLEEP)  # not of this session: left alone
    reaper = subprocess.Popen(
        [sys.executable, "-m", "tests.reaper", str(session.pid), str(folder)],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != MARK_VARIABLE},
    )
    try:
        time.sleep(1.5)
        assert server.poll() is None and reaper.poll() is None, "nothing is stopped while the session runs"
        session.kill()
        session.wait()
        assert reaper.wait(timeout=60) == 0
        assert server.wait(timeout=5) == -signal.SIGKILL, "SIGTERM was ignored, so SIGKILL after the grace period"
        assert bystander.poll() is None
        assert not folder.exists()
    finally:
        for process in (session, server, bystander, reaper):
            process.kill()
            process.wait()
