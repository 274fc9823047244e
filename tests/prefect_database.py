"""The Prefect test server's database: PostgreSQL when the machine runs one (as production should), else SQLite.

The README recommends PostgreSQL for a production Prefect server (SQLite answers 503 under concurrent load). Where a
PostgreSQL with pg_trgm answers on 127.0.0.1:5432 (this machine kind runs one, trust auth), each test process's
Prefect server gets a database of its own there, dropped when the server stops; `FLUSHER_TEST_PREFECT_DB=sqlite`
forces SQLite, `FLUSHER_TEST_PREFECT_DB=postgresql://user@host:port/db` names another PostgreSQL (a superuser).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

DB_ENV = "FLUSHER_TEST_PREFECT_DB"
MACHINE_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
PREFIX = "prefect_test_"
STALE_SECONDS = 6 * 3600  # databases of killed runs older than this are dropped by the next run


def choose(home: Path) -> tuple[str, str, Callable[[], None]]:
    """(kind, SQLAlchemy URL for PREFECT_API_DATABASE_CONNECTION_URL, drop) for a new Prefect server."""
    wanted = os.environ.get(DB_ENV, "")
    sqlite = ("sqlite", f"sqlite+aiosqlite:///{home / 'prefect.db'}", lambda: None)
    if wanted == "sqlite":
        return sqlite
    admin = wanted or MACHINE_PG
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=2) as conn:
            if not conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'").fetchone():
                return sqlite  # Prefect's migrations need pg_trgm
            _drop_stale(conn)
            name = f"{PREFIX}{int(time.time())}_{uuid.uuid4().hex[:8]}"
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error:
        if wanted:
            raise  # named explicitly: a mistake to report, not to paper over
        return sqlite
    info = psycopg.conninfo.conninfo_to_dict(admin)
    user = info.get("user", "postgres")
    host, port = info.get("host", "127.0.0.1"), info.get("port", "5432")
    url = f"postgresql+asyncpg://{user}@{host}:{port}/{name}"
    return "postgresql", url, lambda: _drop(admin, name)


def _drop(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def _drop_stale(conn: psycopg.Connection) -> None:
    """Drop the databases of test runs that were killed before they could (named with their creation time)."""
    now = time.time()
    for (name,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (PREFIX + "%",)).fetchall():
        try:
            created = int(name.removeprefix(PREFIX).split("_")[0])
        except ValueError:
            continue
        if now - created > STALE_SECONDS:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
