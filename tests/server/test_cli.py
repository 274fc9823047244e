"""The console commands a newcomer uses first: init, status (--help is in tests/unit/test_cli.py)."""

from __future__ import annotations

import pytest

from flusher.registry import registry
from tests.helpers import flush

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_init_creates_the_lake_tables_and_never_drops_them(hot):
    first = hot.run_cli("init")
    assert first.returncode == 0, first.stderr
    assert "21 tables created" in first.stdout
    hot.load(1, 3)
    assert flush(hot).is_completed()
    again = hot.run_cli("init")
    assert again.returncode == 0 and "0 tables created, 21 already there" in again.stdout
    assert sum(hot.assert_exactly_once().values()) > 0, "a second init keeps the lake's data"


def test_status_shows_hot_rows_flushed_rows_and_the_last_batch(hot):
    hot.load(1, 4)
    assert flush(hot).is_completed()
    hot.load(5, 2)
    result = hot.run_cli("status")
    assert result.returncode == 0, result.stderr
    table_lines, state_line = result.stdout.splitlines()[2:-1], result.stdout.splitlines()[-1]
    lines = {line.split()[0]: line.split() for line in table_lines if line.strip()}
    assert state_line.startswith("state ") and "adopted (empty lake)" in state_line, state_line
    assert set(lines) == set(registry()), "every known table, by default"
    assert lines["ledgers_row_v2"][1:5] == ["2", "4", "1", "confirmed"]
    assert "flushes: 1 completed, 0 failed" in result.stdout


def test_in_process_flows_use_the_sessions_prefect_server(prefect_api):
    """Also after tests/harness ran in this process (as on an xdist worker): CLI children and in-process runs must
    share one API, or the alert and secret tests read an API the runs never wrote to."""
    from prefect.settings import get_current_settings

    assert get_current_settings().api.url == prefect_api
