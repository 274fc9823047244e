"""Type mapping and bad data (issue 4): what each hot type becomes in the lake, and what the lake refuses."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest

from flusher.lake import LakeSession
from tests.helpers import ENABLED, flush, task_attempts, write_config
from tests.server.test_timezones import ZONES

pytestmark = pytest.mark.usefixtures("prefect_api")

NEW_COLUMNS = [
    ("fee_exact", "NUMERIC(20,7)", "DECIMAL(20,7)", "12.3456789", Decimal("12.3456789")),
    ("tags", "TEXT[]", "VARCHAR", "ARRAY['a,b', 'say \"hi\"']", json.dumps(["a,b", 'say "hi"'], separators=(",", ":"))),
    ("scores", "INTEGER[]", "VARCHAR", "ARRAY[1, 2, 3]", "[1,2,3]"),
    ("doc", "JSONB", "VARCHAR", "'{\"k\": [1, 2]}'::jsonb", '{"k": [1, 2]}'),
    ("raw", "BYTEA", "BLOB", "'\\xdeadbeef'::bytea", b"\xde\xad\xbe\xef"),
    (
        "uid",
        "UUID",
        "UUID",
        "'3d86b3e4-1371-4491-819f-4ec6a3584059'",
        uuid.UUID("3d86b3e4-1371-4491-819f-4ec6a3584059"),
    ),
    ("day", "DATE", "DATE", "'2025-01-02'", date(2025, 1, 2)),
    ("took", "INTERVAL", "INTERVAL", "'90 seconds'", timedelta(seconds=90)),
    ("ratio", "REAL", "FLOAT", "0.5", 0.5),
    # UTC wall time whatever the zone of the host or the session (the flush runs under three host zones).
    ("seen_at", "TIMESTAMPTZ", "TIMESTAMP", "'2025-03-09 06:59:59.999999+00'", datetime(2025, 3, 9, 6, 59, 59, 999999)),
    # A plain TIMESTAMP passes through as it is, even a wall time New York skips at its clock change.
    ("local_at", "TIMESTAMP", "TIMESTAMP", "'2025-03-09 02:30:00.25'", datetime(2025, 3, 9, 2, 30, 0, 250000)),
]


def _add_columns(hot, table: str, columns) -> None:
    for schema in ("public", "audit"):
        for name, pg_type, *_ in columns:
            hot.execute(f'ALTER TABLE {schema}.{table} ADD COLUMN "{name}" {pg_type}')


@pytest.mark.parametrize("zone", ZONES)
def test_each_hot_type_lands_as_its_documented_lake_type(hot, zone):
    # Certified from the source: verify, which hashes the lake's values, must agree for every type in every zone.
    hot.config = write_config(hot, flush={"certificate": "source"})
    _add_columns(hot, "trades_row_v1", NEW_COLUMNS)
    hot.load(1, 3)
    assignments = ", ".join(f'"{name}" = {value}' for name, _, _, value, _ in NEW_COLUMNS)
    hot.execute(f"UPDATE trades_row_v1 SET {assignments}")
    # A process of its own: DuckDB takes the host's zone once per process, so only a new one under TZ proves it.
    result = hot.run_cli("flush", env={"TZ": zone})
    assert result.returncode == 0, result.stdout + result.stderr
    with LakeSession(hot.settings(), attach_hot=False) as lake:
        cur = lake.cursor()
        types = dict(
            cur.execute(
                "SELECT column_name, data_type FROM duckdb_columns() "
                "WHERE database_name = ? AND table_name = 'trades_row_v1'",
                [lake.lake],
            ).fetchall()
        )
        names = ", ".join(f'"{n}"' for n, *_ in NEW_COLUMNS)
        rows = cur.execute(f"SELECT {names} FROM {lake.table('trades_row_v1')}").fetchall()
    for name, _, lake_type, _, _ in NEW_COLUMNS:
        assert types[name] == lake_type, name
    assert len(rows) == 3
    for row in rows:
        for (name, _, _, _, expected), value in zip(NEW_COLUMNS, row, strict=False):
            assert value == expected, f"{name}: {value!r}"
    hot.assert_exactly_once()
    verified = hot.run_cli("verify", "--tables", "trades_row_v1", env={"TZ": zone})
    assert verified.returncode == 0, verified.stdout + verified.stderr
    certified = hot.execute(
        "SELECT count(*) FROM flusher_state.table_batches WHERE table_name = 'trades_row_v1' "
        "AND certificate_digest IS NOT NULL"
    )
    assert certified == [(1,)]


def test_types_the_lake_cannot_take_fail_only_their_table(hot):
    _add_columns(hot, "offers_snapshot_v1", [("location", "POINT")])
    _add_columns(hot, "accounts_snapshot_v1", [("exact_balance", "NUMERIC")])
    hot.load(1, 4)
    state = flush(hot)
    assert state.is_failed()
    assert "offers_snapshot_v1.location has type STRUCT" in state.message
    assert "accounts_snapshot_v1.exact_balance has type NUMERIC" in state.message and "lose digits" in state.message
    assert task_attempts(state, "accounts_snapshot_v1") == 1, "a refused type is not retried (flush.retries is 1)"
    assert hot.hot_count_at_or_below("offers_snapshot_v1", 4) == 4
    assert hot.hot_count_at_or_below("accounts_snapshot_v1", 4) == 4 * 3
    others = [t for t in ENABLED if t not in ("offers_snapshot_v1", "accounts_snapshot_v1")]
    assert all(hot.hot_count_at_or_below(t, 4) == 0 for t in others)
    hot.assert_exactly_once(others)


def test_invalid_utf8_names_the_column_and_ledgers_and_the_rest_flush(ascii_hot):
    hot = ascii_hot
    hot.load(1, 10)
    hot.execute(
        r"UPDATE effects_row_v1 SET details_json = E'{\"memo\": \"caf\xe9\"}' "
        "WHERE ledger_sequence IN (4, 7) AND effect_index = 1"
    )
    state = flush(hot)
    assert state.is_failed()
    assert "effects_row_v1" in state.message
    assert "invalid UTF-8" in state.message and "column details_json: 2 row(s), ledgers 4..7" in state.message, (
        state.message
    )
    assert hot.hot_count_at_or_below("effects_row_v1", 10) == 30
    assert hot.hot_count_at_or_below("operations_row_v2", 10) == 0
    hot.assert_exactly_once(unconfirmed_ok=True)

    hot.execute(
        'UPDATE effects_row_v1 SET details_json = \'{"memo": "cafe"}\' WHERE ledger_sequence IN (4, 7) '
        "AND effect_index = 1"
    )
    assert flush(hot).is_completed()
    assert hot.assert_exactly_once()["effects_row_v1"] == 30
