"""Messages that say what is wrong (issue 14): who holds the flusher lock, which catalog is down, which port is taken.

The first tests need no server (a closed port is a real unreachable server); the last ones use the fixtures.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from flusher.config import ConfigError, connection_reason, settings_from_mapping
from flusher.hot import LockHolder, holder_name
from tests.helpers import ROOT, flush, wait_for_flusher_lock, write_config

SECRET = "Zq9xSECRETv7"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once closed


def _settings(catalog: str, **service):
    return settings_from_mapping(
        {
            "postgres": {"host": "127.0.0.1", "port": _closed_port(), "database": "hot", "password": SECRET},
            "ducklake": {"catalog_path": catalog, "data_path": "/tmp/unused-lake"},
            "service": service,
        },
        "t",
        {},
    )


def test_the_lock_holder_is_named_by_kind_and_flow_run():
    run = "0b7c6a52-9f1e-4a3e-8f44-123456789abc"
    assert len(holder_name("maintenance", run).encode()) <= 63, "application_name keeps 63 bytes"
    maintenance = LockHolder(4242, holder_name("maintenance", run))
    assert maintenance.kind == "maintenance"
    assert maintenance.describe() == (
        f"maintenance is running (flow run {run}, PostgreSQL backend pid 4242) and holds the flusher lock"
    )
    assert LockHolder(7, holder_name("flush", run)).describe().startswith("another flush is running (flow run ")
    other = LockHolder(9, "psql").describe()
    assert "not a flusher run" in other and "'psql'" in other and "pid 9" in other
    assert "let go" in LockHolder(None, None).describe()


def test_an_unreachable_catalog_is_named_with_host_port_and_database_never_the_password():
    from flusher.app.probe_reader import CatalogCheck

    port = _closed_port()
    for catalog in (
        f"postgresql://lake:{SECRET}@127.0.0.1:{port}/catalog_db",
        f"host=127.0.0.1 port={port} dbname=catalog_db user=lake password='{SECRET} x'",
    ):
        problem = CatalogCheck(_settings(catalog)).problem()
        assert problem.startswith(f"DuckLake catalog lake@127.0.0.1:{port}/catalog_db unreachable: "), problem
        assert "Connection refused" in problem and not problem.split(": ", 1)[1].startswith(("\t", "Is the")), problem
        assert SECRET not in problem


def test_an_unreachable_catalog_at_attach_names_host_port_and_database():
    from flusher.lake import LakeError, LakeSession

    port = _closed_port()
    settings = _settings(f"postgresql://lake:{SECRET}@127.0.0.1:{port}/catalog_db")
    with pytest.raises(LakeError) as info:
        LakeSession(settings, attach_hot=False)
    message = str(info.value)
    assert message.startswith(f"cannot connect to the DuckLake catalog lake@127.0.0.1:{port}/catalog_db: "), message
    assert "Connection refused" in message and SECRET not in message and "\t" not in message


def test_an_unreachable_hot_buffer_keeps_libpqs_host_and_port():
    from flusher.hot import HotBufferError, connect

    settings = _settings("host=db dbname=c")
    with pytest.raises(HotBufferError) as info:
        connect(settings.postgres)
    message = str(info.value)
    assert f"port {settings.postgres.port} failed: Connection refused" in message and "\t" not in message, message
    assert SECRET not in message


def test_connection_reason_is_one_line_and_an_sql_errors_statement_stays_out():
    import psycopg

    refused = psycopg.OperationalError(
        'connection failed: connection to server at "db", port 1 failed: '
        "Connection refused\n\tIs the server running on that host?"
    )
    assert connection_reason(refused) == (
        'connection to server at "db", port 1 failed: Connection refused; Is the server running on that host?'
    )
    sql_error = psycopg.errors.UndefinedTable('relation "x" does not exist\nLINE 1: SELECT max(a) FROM x\n  ^')
    assert connection_reason(sql_error) == 'relation "x" does not exist'


def test_a_health_port_in_use_is_a_config_error_naming_the_key():
    from flusher.app.health import HealthProbe, HealthServer

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = _settings("host=db dbname=c", health_host="127.0.0.1", health_port=port)
        with pytest.raises(ConfigError) as info:
            HealthServer(HealthProbe(settings, None, lambda: None, interval_seconds=600), "127.0.0.1", port)
    assert f"service.health_port: 127.0.0.1:{port} is already in use" in str(info.value)
    with pytest.raises(ConfigError, match="service.health_host"):
        HealthServer(HealthProbe(settings, None, lambda: None, interval_seconds=600), "no-such-host.invalid", 0)


# --- with PostgreSQL and Prefect ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("prefect_api")
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


@pytest.mark.usefixtures("prefect_api")
def test_a_flush_with_the_catalog_down_names_its_host_port_and_database(hot):
    port = _closed_port()
    hot.config = write_config(hot, ducklake={"catalog_path": f"postgresql://lake:{SECRET}@127.0.0.1:{port}/cat_db"})
    hot.load(1, 3)
    result = hot.run_cli("flush")
    assert result.returncode == 1
    assert f"lake@127.0.0.1:{port}/cat_db" in result.stderr + result.stdout, result.stderr[-3000:]
    assert hot.hot_count_at_or_below("trades_row_v1", 3) > 0, "nothing was deleted"


@pytest.mark.usefixtures("prefect_api")
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


@pytest.mark.usefixtures("prefect_api")
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
