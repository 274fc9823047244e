"""Messages that say what is wrong (issue 14), in real runs: maintenance holds the lock, the catalog is down, the
health port is taken, a text ledger column. The messages themselves are unit-tested in tests/unit/test_messages.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.helpers import ROOT, flush, wait_for_flusher_lock, write_config

pytestmark = pytest.mark.usefixtures("prefect_api")
SECRET = "Zq9xSECRETv7"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once closed


# --- with PostgreSQL and Prefect ----------------------------------------------------------------------------------


def test_a_flush_blocked_by_maintenance_says_maintenance_holds_the_lock(hot):
    hot.load(1, 5)
    assert flush(hot).is_completed()
    go_on = hot.tmp / "maintenance-may-go-on"
    log = hot.tmp / "maintenance.log"
    env = {**os.environ, "FLUSHER_FAILPOINTS": f"maintenance_locked=until={go_on}"}
    maintenance = subprocess.Popen(
        [sys.executable, "-m", "flusher.app.cli", "maintain", "--config", str(hot.config)],
        env=env,
        cwd=ROOT,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_flusher_lock(hot)
        hot.load(6, 5)
        skipped = flush(hot)
        assert skipped.name == "Skipped" and skipped.is_completed(), skipped
        assert skipped.message.startswith("maintenance is running (flow run "), skipped.message
        assert "another flush" not in skipped.message
        cli = hot.run_cli("flush")
        assert cli.returncode == 0, cli.stderr[-2000:]
        line = [ln for ln in cli.stdout.splitlines() if ln.startswith("Skipped")]
        assert line and line[0].startswith("Skipped: maintenance is running"), cli.stdout
        assert "skipped:" not in cli.stdout.lower().replace("skipped: maintenance", ""), (
            "no doubled 'Skipped: skipped:'"
        )
        go_on.touch()
        assert maintenance.wait(timeout=180) == 0, log.read_text()[-3000:]
    finally:
        go_on.touch()
        maintenance.kill()
        maintenance.wait()
    assert flush(hot).is_completed()
    hot.assert_exactly_once()


def test_a_flush_with_the_catalog_down_names_its_host_port_and_database(hot):
    port = _closed_port()
    hot.config = write_config(hot, ducklake={"catalog_path": f"postgresql://lake:{SECRET}@127.0.0.1:{port}/cat_db"})
    hot.load(1, 3)
    result = hot.run_cli("flush")
    assert result.returncode == 1
    assert f"lake@127.0.0.1:{port}/cat_db" in result.stderr + result.stdout, result.stderr[-3000:]
    assert hot.hot_count_at_or_below("trades_row_v1", 3) > 0, "nothing was deleted"


def test_serve_with_the_health_port_in_use_exits_2_naming_the_key(hot):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        hot.config = write_config(hot, service={"health_port": port, "health_host": "127.0.0.1"})
        result = hot.run_cli("serve", "--no-maintenance", timeout=180)
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"service.health_port: 127.0.0.1:{port} is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_text_ledger_column_is_refused_by_name_in_dry_runs_and_takeover_plans_not_a_binder_error(hot):
    """The flush refused it already (tests/server/test_tables_and_stuck_rows.py); the dry run crashed on
    `text <= smallint` and the takeover plan showed DuckDB's raw Binder Error."""
    for schema in ("public", "audit"):
        hot.execute(f"ALTER TABLE {schema}.token_transfers_stream_v1 ALTER COLUMN ledger_sequence TYPE TEXT")
    hot.load(1, 12)
    hot.load(1, 12, tables=["token_transfers_stream_v1"])
    assert hot.run_cli("init").returncode == 0  # the takeover plan reads a lake that exists
    for args in (("flush", "--dry-run"), ("takeover", "--dry-run")):
        result = hot.run_cli(*args)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-3000:]
        assert "Binder Error" not in output and "Traceback" not in output, output[-3000:]
        assert "ledger column public.token_transfers_stream_v1.ledger_sequence has type" in output, output[-3000:]
        assert "not an integer type" in output and "ALTER COLUMN ledger_sequence TYPE bigint" in output
    assert hot.execute("SELECT count(*) FROM token_transfers_stream_v1")[0][0] > 0, "dry runs change nothing"
