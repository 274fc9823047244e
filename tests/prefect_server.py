"""A real `prefect server start` on loopback (PostgreSQL if the machine has one, else SQLite; services on, offline)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrefectServer:
    """Starts the server in its own process group; `env` is what clients need to reach it."""

    def __init__(self, home: Path) -> None:
        from tests import prefect_database

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        home.mkdir(parents=True, exist_ok=True)
        self.log = home / "server.log"
        self.database, database_url, self._drop_database = prefect_database.choose(home)
        self.env = {
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": self.url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        self._server_env = {
            **os.environ,
            **self.env,
            # The API host/port come from the environment (not --port), so the UI talks to this server.
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(self.port),
            "PREFECT_UI_URL": f"http://127.0.0.1:{self.port}",
            "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
            # Short loops so schedules and proactive automations act within a test's patience.
            "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
            "PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS": "1",
        }
        self._server_env.pop("PREFECT_API_URL", None)
        self.process: subprocess.Popen | None = None

    def launch(self) -> None:
        """Start the server process without waiting for it (start() waits; the test session launches it early)."""
        if self.process is not None:
            return
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "prefect", "server", "start"],
                env=self._server_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start(self, timeout: float = 120) -> None:
        """Launch the server if not yet launched, and wait until its API answers."""
        self.launch()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prefect server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"prefect server did not start in {timeout}s: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._drop_database()
        self._drop_database = lambda: None
