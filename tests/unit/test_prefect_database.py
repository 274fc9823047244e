"""Which database the test and benchmark Prefect servers use (tests/prefect_database.py)."""

from __future__ import annotations

import psycopg
import pytest

from tests import prefect_database


def test_sqlite_can_be_forced(tmp_path, monkeypatch):
    monkeypatch.setenv(prefect_database.DB_ENV, "sqlite")
    kind, url, drop = prefect_database.choose(tmp_path)
    assert (kind, url) == ("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}")
    drop()


def test_a_named_postgresql_that_does_not_answer_is_an_error_not_a_silent_sqlite(tmp_path, monkeypatch):
    monkeypatch.setenv(prefect_database.DB_ENV, "postgresql://postgres@127.0.0.1:1/postgres")
    with pytest.raises(psycopg.OperationalError):
        prefect_database.choose(tmp_path)


def test_without_the_machines_postgresql_it_falls_back_to_sqlite(tmp_path, monkeypatch):
    monkeypatch.delenv(prefect_database.DB_ENV, raising=False)
    monkeypatch.setattr(prefect_database, "MACHINE_PG", "postgresql://postgres@127.0.0.1:1/postgres")
    assert prefect_database.choose(tmp_path)[0] == "sqlite"
