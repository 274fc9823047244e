"""Pure logic: watermark choice, column mapping by name, schema files, failpoints, redaction. No servers."""

from __future__ import annotations

import re
from datetime import UTC
from importlib import resources

import duckdb
import psycopg.conninfo
import pytest

from flusher import failpoints
from flusher.config import DuckLakeSettings, PostgresSettings, session_options, with_session_options
from flusher.hot import choose_watermark, validate_snapshot_id
from flusher.lake import Column, bronze_ddl, connect_duckdb, pool_settings, redact
from flusher.registry import registry
from flusher.transfer import SchemaMismatch, lake_type_for, plan_columns


@pytest.mark.parametrize(
    ("hot_min", "hot_max", "previous", "cap", "expected"),
    [
        (None, None, None, 0, None),  # nothing ever: nothing to do
        (1, 100, None, 0, 100),  # the normal case: MAX(sequence)
        (None, None, 100, 0, 100),  # ledgers all flushed: late rows in other tables still move
        (1, 100, None, 10, 10),  # catch-up in chunks
        (11, 100, 10, 10, 20),
        (5, 100, 50, 10, 50),  # a late ledger row below the previous watermark: never go backwards
        (95, 100, 94, 10, 100),  # the cap never goes past the hot maximum
    ],
)
def test_choose_watermark(hot_min, hot_max, previous, cap, expected):
    assert choose_watermark(hot_min, hot_max, previous, cap) == expected


@pytest.mark.parametrize(
    ("hot_max", "previous", "cap", "ceiling", "expected"),
    [
        (100, None, 0, None, 100),  # no downstream consumer
        (100, None, 0, 60, 60),  # the lowest consumer checkpoint bounds the run
        (100, 80, 0, 60, 60),  # even below the previous watermark: nothing flushed that cannot be deleted
        (100, None, 10, 60, 10),  # the catch-up cap still applies below it
        (50, None, 0, 60, 50),  # a consumer ahead of the hot buffer changes nothing
    ],
)
def test_choose_watermark_never_passes_the_downstream_ceiling(hot_max, previous, cap, ceiling, expected):
    assert choose_watermark(1, hot_max, previous, cap, ceiling) == expected


def test_snapshot_ids_are_validated_before_they_reach_sql():
    assert validate_snapshot_id("00000003-00000005-1") == "00000003-00000005-1"
    with pytest.raises(ValueError):
        validate_snapshot_id("1'; DROP TABLE x; --")


def test_columns_are_mapped_by_name_whatever_the_physical_order():
    lake = [Column("a", "BIGINT"), Column("b", "VARCHAR"), Column("c", "TIMESTAMP")]
    hot = [Column("c", "TIMESTAMP WITH TIME ZONE"), Column("b", "VARCHAR"), Column("a", "BIGINT")]
    plan = plan_columns("t", hot, lake)
    assert plan.select == ['timezone(\'UTC\', "c") AS "c"', '"b"', '"a"']
    assert plan.add_to_lake == [] and plan.missing_in_hot == []


def test_timestamptz_is_copied_as_its_utc_wall_time_whatever_the_duckdb_session_zone():
    """The copy's expression spells out UTC, so even a cursor in another zone stores the same wall time."""
    plan = plan_columns("t", [Column("c", "TIMESTAMP WITH TIME ZONE")], [])
    con = duckdb.connect()
    con.execute("SET TimeZone = 'America/New_York'")
    value = con.execute(
        f"SELECT {plan.select[0]} FROM (SELECT TIMESTAMPTZ '2025-03-09 06:59:59.5+00' AS c)"
    ).fetchone()[0]
    assert str(value) == "2025-03-09 06:59:59.500000"


def test_every_duckdb_cursor_of_the_flusher_works_in_utc(tmp_path):
    db = connect_duckdb(1, "256MB", tmp_path)
    try:
        assert {db.cursor().execute("SELECT current_setting('TimeZone')").fetchone()[0] for _ in range(3)} == {"UTC"}
    finally:
        db.close()


def test_session_settings_reach_every_postgres_connection_string_after_the_users_own_options():
    assert session_options(0) == "-c TimeZone=UTC -c idle_in_transaction_session_timeout=0 -c statement_timeout=0"
    merged = psycopg.conninfo.conninfo_to_dict(
        with_session_options(
            "postgresql://u:pw@db:5433/cat?options=-c%20search_path%3Dx%20-c%20TimeZone%3DEurope/Paris", 0
        )
    )
    assert merged["options"] == (
        "-c search_path=x -c TimeZone=Europe/Paris -c TimeZone=UTC "
        "-c idle_in_transaction_session_timeout=0 -c statement_timeout=0"
    )
    assert (merged["host"], merged["port"], merged["dbname"], merged["password"]) == ("db", "5433", "cat", "pw")
    pg = PostgresSettings(database="hot", statement_timeout_seconds=60)
    assert "-c statement_timeout=60s" in psycopg.conninfo.conninfo_to_dict(pg.conninfo())["options"]
    assert "-c statement_timeout=0" in psycopg.conninfo.conninfo_to_dict(pg.conninfo(scanner=True))["options"]
    lake = DuckLakeSettings(catalog_path="host=db dbname=cat", data_path="/tmp/lake")
    assert (
        "-c idle_in_transaction_session_timeout=0"
        in psycopg.conninfo.conninfo_to_dict(lake.catalog_conninfo())["options"]
    )


def test_new_hot_columns_are_added_to_the_lake_and_missing_ones_stay_null():
    lake = [Column("a", "BIGINT"), Column("gone", "VARCHAR")]
    hot = [Column("a", "BIGINT"), Column("tags", "VARCHAR[]"), Column("doc", "JSON")]
    plan = plan_columns("t", hot, lake)
    assert plan.add_to_lake == [Column("tags", "VARCHAR"), Column("doc", "VARCHAR")]
    assert 'CAST(to_json("tags") AS VARCHAR) AS "tags"' in plan.select
    assert plan.missing_in_hot == ["gone"]


def test_a_type_the_lake_cannot_store_is_named():
    with pytest.raises(SchemaMismatch, match=r"t\.geo has type GEOMETRY"):
        plan_columns("t", [Column("geo", "GEOMETRY")], [])
    assert lake_type_for("DECIMAL(18,7)") == "DECIMAL(18,7)"
    assert lake_type_for("TIMESTAMP WITH TIME ZONE") == "TIMESTAMP"


def _hot_columns() -> dict[str, set[str]]:
    text = resources.files("flusher.schema").joinpath("hot_buffer.sql").read_text()
    columns: dict[str, set[str]] = {}
    for table, body in re.findall(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);", text, re.S):
        for line in body.splitlines():
            match = re.match(r'\s*("?\w+"?) ', line)
            if match and match.group(1).upper() not in ("PRIMARY", "CONSTRAINT"):
                columns.setdefault(table, set()).add(match.group(1).strip('"'))
    for table, column in re.findall(r'ALTER TABLE (\w+) ADD COLUMN IF NOT EXISTS ("?\w+"?)', text):
        columns[table].add(column.strip('"'))
    return columns


def test_the_bronze_ddl_and_the_hot_ddl_describe_the_same_tables_and_columns():
    ddl = bronze_ddl()
    assert list(ddl) == list(registry())
    con = duckdb.connect()
    for statement in ddl.values():
        con.execute(statement)
    lake = {
        t: {c for (c,) in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = ?", [t]).fetchall()}
        for t in ddl
    }
    assert lake == _hot_columns()
    assert len(lake["ledgers_row_v2"]) == 29 and len(lake["operations_row_v2"]) == 69


def test_failpoints_fire_only_where_armed(monkeypatch):
    failpoints.hit("after_lake_commit", "t")  # unarmed: nothing happens
    monkeypatch.setenv(failpoints.ENV, "after_lake_commit:t1=raise,in_delete=raise")
    failpoints.hit("after_lake_commit", "t2")
    with pytest.raises(failpoints.InjectedFault, match="after_lake_commit"):
        failpoints.hit("after_lake_commit", "t1")
    with pytest.raises(failpoints.InjectedFault):
        failpoints.hit("in_delete", "any_table")


def test_errors_are_scrubbed_of_passwords():
    message = redact("could not connect: host=db password=hunter2 user=x; secret key AKIA123", "AKIA123")
    assert "hunter2" not in message and "AKIA123" not in message


def test_a_missing_extension_wheel_says_what_to_install(monkeypatch):
    from flusher import extensions

    monkeypatch.setitem(extensions.EXTENSION_PACKAGES, "ducklake", "duckdb_extension_not_installed")
    with pytest.raises(
        extensions.ExtensionMissing, match=f"pip install duckdb-extension-not-installed=={duckdb.__version__}"
    ):
        extensions.extension_path("ducklake")


def test_httpfs_is_loaded_only_for_a_remote_lake():
    from flusher.config import settings_from_mapping
    from flusher.lake import _extensions_for

    def settings(data_path: str):
        raw = {
            "postgres": {"database": "hot"},
            "ducklake": {"catalog_path": "host=db dbname=c", "data_path": data_path},
        }
        return settings_from_mapping(raw, environ={})

    assert "httpfs" in _extensions_for(settings("s3://bronze/lake"))
    assert _extensions_for(settings("/var/lib/lake")) == ("postgres_scanner", "ducklake")


def test_tables_flush_largest_first_and_unknown_sizes_last_in_their_order():
    from flusher.plan import largest_first

    sized = {"a": 10, "b": 300, "c": 20}
    assert largest_first(["a", "missing", "b", "c", "other"], sized) == ["b", "c", "a", "missing", "other"]


def test_a_label_is_this_states_only_with_its_id_or_as_an_upgraded_states_old_label():
    from datetime import datetime

    from flusher.adoption import _may_be_ours, parse_label
    from flusher.state import StateIdentity

    now = datetime.now(UTC)
    new = StateIdentity("s-1", now, now, "empty lake", 5, None)
    upgraded = StateIdentity("s-1", now, now, "upgrade", 5, 7)
    assert _may_be_ours(new, parse_label(6, '{"state": "s-1", "table": "t", "batch": 3, "watermark": 9}'))
    assert not _may_be_ours(new, parse_label(6, '{"state": "s-2", "table": "t", "batch": 3}'))
    assert not _may_be_ours(new, parse_label(6, '{"table": "t", "batch": 3}')), "an old label is no new state's"
    assert _may_be_ours(upgraded, parse_label(6, '{"table": "t", "batch": 7}'))
    assert not _may_be_ours(upgraded, parse_label(6, '{"table": "t", "batch": 8}')), "allocated after the upgrade"
    for broken in (None, "", "not json", "[1]", '{"state": "s-1", "table": "t", "batch": "3"}', '{"state": "s-1"}'):
        assert not _may_be_ours(upgraded, parse_label(6, broken)), broken
    one_snapshot = parse_label(6, '{"state": "s-1", "tables": ["a", "b"], "batch": 3, "watermark": 9}')
    assert one_snapshot.tables == ("a", "b") and _may_be_ours(new, one_snapshot)
    assert not _may_be_ours(new, parse_label(6, '{"state": "s-1", "tables": [], "batch": 3}'))
    assert StateIdentity("s-1", now, None, None, None, None).adopted is None
    assert StateIdentity("s-1", now, None, "takeover", None, None).adopted is False


def test_the_catalog_pool_keeps_its_health_check_and_holds_two_connections_per_concurrent_flush():
    assert pool_settings(8) == ["SET GLOBAL pg_pool_max_connections = 16"]  # no health_check_query override
    assert pool_settings(1) == ["SET GLOBAL pg_pool_max_connections = 4"]  # never below the extension's default


def test_a_one_snapshot_label_names_every_table_and_carries_each_certificate():
    import json

    from flusher.certificate import ALGORITHM, Certificate
    from flusher.hot import Mark
    from flusher.transfer import group_label

    mark = Mark(7, 120, "00000003-0000001B-1", 1, 120, None)
    certificate = Certificate(10, 2**70, ALGORITHM, ("a",))
    message, info = group_label(["b_table", "a_table"], mark, "s-1", {"a_table": certificate, "b_table": None})
    assert message == "flush 2 tables batch 7 up to ledger 120"
    parsed = json.loads(info)
    assert parsed["tables"] == ["a_table", "b_table"] and parsed["batch"] == 7 and parsed["state"] == "s-1"
    assert parsed["certificates"] == {"a_table": {"rows": 10, "digest": str(2**70), "hash": ALGORITHM}}
