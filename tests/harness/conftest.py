"""The Prefect layer: Prefect's own test harness (a throw-away API on a temporary SQLite database) for every test in
tests/harness. No PostgreSQL, no separately started `prefect server start`.

Package scope, not session: the harness overrides the API URL for this process while it is active, and in
`make test` the same worker goes on to tests/server, whose in-process flows must reach the real server that their
CLI child processes use. PREFECT_HOME stays in the temporary folder tests/conftest.py set.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="package", autouse=True)
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
