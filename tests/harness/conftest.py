"""The Prefect layer: Prefect's own test harness (a throw-away API on a temporary SQLite database) for every test in
tests/harness. No PostgreSQL, no separately started `prefect server start`.

Package scope, not session: the harness overrides the API URL for this process while it is active, and in
`make test` the same worker goes on to tests/server, whose in-process flows must reach the real server that their
CLI child processes use. PREFECT_HOME stays in the temporary folder tests/conftest.py set; checked here, so that no
harness test writes under ~/.prefect.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def prefect_paths() -> dict[str, Path]:
    """Where Prefect writes in this process: its home, profiles, results and (under the harness) the API database."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    paths = {
        "PREFECT_HOME": settings.home,
        "profiles": settings.profiles_path,
        "results": settings.results.local_storage_path,
    }
    url = settings.server.database.connection_url
    if url is not None and url.get_secret_value().startswith("sqlite"):
        paths["database"] = Path(url.get_secret_value().partition(":///")[2])
    return paths


@pytest.fixture(scope="package", autouse=True)
def prefect_harness():
    """prefect_test_harness for tests/harness, once it is clear Prefect writes under the session's temp folder."""
    from prefect.testing.utilities import prefect_test_harness

    expected = Path(os.environ["PREFECT_HOME"]).resolve()
    home = Path.home().resolve()
    with prefect_test_harness(server_startup_timeout=120):
        paths = prefect_paths()
        assert paths["PREFECT_HOME"].resolve() == expected, paths
        for name, path in paths.items():
            assert not path.resolve().is_relative_to(home), f"Prefect's {name} is under ~: {path}"
        yield paths
