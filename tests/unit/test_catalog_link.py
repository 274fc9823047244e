"""The direct catalog connection's errors: where and why, never the password. No servers (a closed port)."""

from __future__ import annotations

import socket

import pytest
from psycopg import sql

from flusher.catalog_link import CatalogLink, CatalogLookupError
from flusher.config import DuckLakeSettings


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_catalog_says_where_and_why_and_never_the_password():
    port = _closed_port()
    lake = DuckLakeSettings(
        catalog_path=f"host=127.0.0.1 port={port} user=flusher password=s3cr3t-pw dbname=cat connect_timeout=2",
        data_path="/tmp/lake",
    )
    link = CatalogLink(lake)
    with pytest.raises(CatalogLookupError) as caught:
        link.fetch_one(sql.SQL("SELECT 1"), [])
    message = str(caught.value)
    assert "s3cr3t-pw" not in message
    assert f"flusher@127.0.0.1:{port}/cat" in message
    assert "Connection refused" in message  # libpq's reason, not just that it failed
    assert "ducklake.catalog_path" in message
    link.close()
