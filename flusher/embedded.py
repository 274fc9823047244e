"""A throw-away PostgreSQL (pgserver) and hot-buffer set-up, for the demo, tests and benchmarks."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pgserver
import psycopg
from psycopg import sql


def start_embedded_postgres(data_dir: Path, keep: bool = False):
    """Start (or reuse) a pgserver PostgreSQL in data_dir; returns the server (stopped on cleanup unless keep)."""
    return pgserver.get_server(str(data_dir), cleanup_mode=None if keep else "stop")


def server_params(uri: str) -> dict[str, str]:
    """host (a socket folder or a hostname), port and user of a PostgreSQL URI."""
    parts = psycopg.conninfo.conninfo_to_dict(uri)
    return {
        "host": parts.get("host", "localhost"),
        "port": str(parts.get("port", 5432)),
        "user": parts.get("user", "postgres"),
    }


def create_database(admin_uri: str, name: str, encoding: str | None = None) -> None:
    """CREATE DATABASE unless it exists (encoding e.g. SQL_ASCII: invalid UTF-8 gets in, as in some hot buffers)."""
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if encoding:
            statement += sql.SQL(" ENCODING {} LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0").format(
                sql.Literal(encoding)
            )
        conn.execute(statement)


def create_hot_schema(conn: psycopg.Connection, schema: str = "public") -> None:
    """Create the 21 hot-buffer tables (schema/hot_buffer.sql) in `schema`."""
    ddl = resources.files("flusher.schema").joinpath("hot_buffer.sql").read_text()
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    conn.execute(ddl)
    conn.execute("RESET search_path")
