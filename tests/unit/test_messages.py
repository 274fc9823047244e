"""Messages that say what is wrong (issue 14), without a server: who holds the flusher lock, which catalog is
unreachable (a closed port is a real unreachable server), which port is taken. The runs that show these messages
are in tests/server/test_messages.py.
"""

from __future__ import annotations

import socket

import pytest

from flusher.config import ConfigError, connection_reason, settings_from_mapping
from flusher.hot import LockHolder, holder_name

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
