"""Prefect's in-process test harness (its own SQLite API server) for the session, kept out of the user's home."""

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


@pytest.fixture(scope="session")
def prefect_harness():
    """prefect_test_harness for the whole session, once it is clear Prefect writes under the session's temp folder.

    tests/conftest.py sets PREFECT_HOME to a temporary folder before Prefect is imported; the harness keeps its
    database in a temporary folder of its own. Checked here, so that no harness test writes under ~/.prefect.
    """
    from prefect.testing.utilities import prefect_test_harness

    expected = Path(os.environ["PREFECT_HOME"]).resolve()
    home = Path.home().resolve()
    with prefect_test_harness():
        paths = prefect_paths()
        assert paths["PREFECT_HOME"].resolve() == expected, paths
        for name, path in paths.items():
            assert not path.resolve().is_relative_to(home), f"Prefect's {name} is under ~: {path}"
        yield paths
