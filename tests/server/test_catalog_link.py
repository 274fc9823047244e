"""The direct catalog connection survives the server closing it between a run's commits (a database's
idle_session_timeout while the run copies another table)."""

from __future__ import annotations

from psycopg import sql

from flusher.lake import LakeSession


def test_a_catalog_connection_the_server_closed_is_opened_again(hot):
    with LakeSession(hot.settings(), attach_hot=False) as lake:
        pid = lake.catalog.fetch_one(sql.SQL("SELECT pg_backend_pid()"), [])[0]
        hot.execute("SELECT pg_terminate_backend(%s)", (pid,))
        again = lake.catalog.fetch_one(sql.SQL("SELECT pg_backend_pid()"), [])[0]
    assert again != pid
