"""A local Prefect API server for the flusher variant: started once per benchmark, in a temporary PREFECT_HOME."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def client_env(home: Path, api_url: str) -> dict[str, str]:
    """Environment for a process that runs flows against this server."""
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def prefect_server(home: Path, log: Path, timeout: float = 90, database: str = "auto") -> Iterator[dict[str, str]]:
    """Start `prefect server start` on a free loopback port; yield the client environment; stop it.

    database: "auto" is PostgreSQL when the machine runs one on 127.0.0.1:5432 (as a production server should),
    else SQLite (tests/prefect_database.py decides, as for the test servers); "sqlite" forces SQLite. The kind used
    is printed, and is BENCH_PREFECT_DATABASE in the yielded environment.
    """
    from tests import prefect_database

    home.mkdir(parents=True, exist_ok=True)
    if database == "sqlite":
        kind, url, drop = "sqlite", f"sqlite+aiosqlite:///{home / 'prefect.db'}", lambda: None
    else:
        kind, url, drop = prefect_database.choose(home)
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = (
        os.environ
        | client_env(home, api_url)
        | {
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_API_DATABASE_CONNECTION_URL": url,
        }
    )
    env.pop("PREFECT_API_URL")  # the server itself must not look for another API
    prefect = Path(sys.executable).parent / "prefect"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(prefect), "server", "start"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + timeout
        while not _healthy(api_url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Prefect server did not start; see {log}")
            time.sleep(0.3)
        print(f"Prefect server on {kind} ({api_url})", flush=True)
        yield client_env(home, api_url) | {"BENCH_PREFECT_DATABASE": kind}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and its workers, nothing else
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        drop()
