"""A direct psycopg connection to the DuckLake catalog database, for the lookups a run repeats per commit.

Through DuckDB, every read of the catalog is a DuckDB transaction on the lake: the postgres extension's checks of
a pooled connection (`SELECT 1`, `DISCARD ALL`, `SELECT 1`), BEGIN, DuckLake's snapshot lookup, the query, COMMIT:
~7 round trips, 0.2 s with the catalog 30 ms away (bench/remote.py). Over this connection the same read is one.
Only reads of what DuckLake has committed go here; everything DuckLake writes goes through DuckDB.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from flusher.config import DuckLakeSettings, connection_reason, sentence
from flusher.secrets import MaskedMessage


class CatalogLookupError(MaskedMessage, RuntimeError):
    """The catalog database could not answer a lookup; the message says where and why, never the password."""


class CatalogLink:
    """One autocommit connection, opened on first use and shared by a run's threads (psycopg serialises them)."""

    def __init__(self, settings: DuckLakeSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None

    def table(self, name: str) -> sql.Identifier:
        """A catalog table (e.g. ducklake_snapshot_changes) in the catalog's metadata schema."""
        return sql.Identifier(self._settings.metadata_schema, name)

    def fetch_one(self, query: sql.Composable, params: Sequence[object]) -> tuple[Any, ...] | None:
        """The first row of `query`, or None."""
        rows = self.fetch_all(query, params)
        return rows[0] if rows else None

    def fetch_all(self, query: sql.Composable, params: Sequence[object]) -> list[tuple[Any, ...]]:
        """Every row of `query`. A connection the server has closed since (a database's idle_session_timeout while
        the run copied) is opened again, once: the lookups are reads, so asking twice is harmless."""
        try:
            conn = self._connection()
            try:
                return conn.execute(query, params).fetchall()
            except psycopg.OperationalError:
                return self._connection(failed=conn).execute(query, params).fetchall()
        except psycopg.Error as exc:
            raise CatalogLookupError(
                f"cannot read the DuckLake catalog {self._settings.describe_catalog()}: "
                f"{sentence(connection_reason(exc))} Check ducklake.catalog_path and that the server is running."
            ) from None

    def _connection(self, failed: psycopg.Connection | None = None) -> psycopg.Connection:
        """The shared connection; a new one in place of `failed` (unless another thread replaced it already)."""
        with self._lock:
            if self._conn is not None and (self._conn is failed or self._conn.broken or self._conn.closed):
                self._conn.close()
                self._conn = None
            if self._conn is None:
                self._conn = psycopg.connect(self._settings.catalog_conninfo(), autocommit=True)
            return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
