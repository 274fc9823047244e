"""The run plan (flusher/plan.py): resolved once from the settings and what the run read; pure, no servers."""

from __future__ import annotations

import dataclasses

import pytest

from flusher.config import settings_from_mapping
from flusher.lake import Column
from flusher.plan import Parallelism, build_run_plan, commit_groups
from flusher.registry import registry
from flusher.storage import StorageKind

BASE = {
    "postgres": {"host": "db", "database": "stellar_hot", "pool_size": 6},
    "ducklake": {"catalog_path": "host=db dbname=catalog", "data_path": "/var/lib/lake"},
}


def _settings(flush: dict | None = None, ducklake: dict | None = None):
    raw = {**BASE, "flush": flush or {}, "ducklake": {**BASE["ducklake"], **(ducklake or {})}}
    return settings_from_mapping(raw, "t.yaml", {})


def _specs(*names: str):
    return [registry()[name] for name in names]


@pytest.mark.parametrize(("cores", "concurrency", "threads"), [(4, 1, 4), (4, 2, 3), (4, 4, 1), (2, 2, 1), (8, 3, 6)])
def test_duckdb_threads_follow_the_flush_parallelism(monkeypatch, cores, concurrency, threads):
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    parallelism = Parallelism.from_settings(_settings({"concurrency": concurrency}))
    assert parallelism == Parallelism(flush=concurrency, delete=6, duckdb_threads=threads)


def test_configured_duckdb_threads_win_over_the_default(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert Parallelism.from_settings(_settings({"concurrency": 2}, {"threads": 3})).duckdb_threads == 3


def test_delete_parallelism_is_the_pool_size():
    assert Parallelism.from_settings(_settings()).delete == 6


def test_tables_start_largest_first_with_unknown_sizes_last_in_their_order():
    specs = _specs("ledgers_row_v2", "transactions_row_v2", "operations_row_v2", "effects_row_v1")
    plan = build_run_plan(
        Parallelism(2, 4, 1),
        StorageKind.LOCAL,
        specs,
        hot_columns={},
        lake_columns={},
        hot_bytes={"ledgers_row_v2": 10, "operations_row_v2": 300, "transactions_row_v2": 20},
    )
    assert plan.order == ("operations_row_v2", "transactions_row_v2", "ledgers_row_v2", "effects_row_v1")
    assert plan.table("operations_row_v2").hot_bytes == 300 and plan.table("effects_row_v1").hot_bytes == 0


def test_column_plans_hold_each_sides_columns_and_mark_lossy_numerics():
    hot = {
        "ledgers_row_v2": [Column("sequence", "BIGINT"), Column("fee", "DOUBLE"), Column("ratio", "DOUBLE")],
        "not_flushed": [Column("x", "INTEGER")],
    }
    lake = {"ledgers_row_v2": [Column("sequence", "BIGINT")]}
    plan = build_run_plan(
        Parallelism(2, 4, 1),
        StorageKind.S3,
        _specs("ledgers_row_v2", "transactions_row_v2"),
        hot,
        lake,
        {},
        lossy={("ledgers_row_v2", "fee"), ("transactions_row_v2", "fee")},
    )
    ledgers = plan.table("ledgers_row_v2")
    assert ledgers.hot_columns == (Column("sequence", "BIGINT"), Column("fee", "NUMERIC"), Column("ratio", "DOUBLE"))
    assert ledgers.lake_columns == (Column("sequence", "BIGINT"),)
    missing = plan.table("transactions_row_v2")
    assert missing.hot_columns is None, "a table missing from the hot buffer is planned as missing (its flush fails)"
    assert missing.lake_columns == ()
    assert set(plan.tables) == {"ledgers_row_v2", "transactions_row_v2"}
    assert plan.storage is StorageKind.S3


def test_the_plan_is_frozen():
    plan = build_run_plan(Parallelism(2, 4, 1), StorageKind.LOCAL, _specs("ledgers_row_v2"), {}, {}, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.order = ()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.parallelism.flush = 9  # type: ignore[misc]
    with pytest.raises(TypeError):
        plan.tables["other"] = plan.table("ledgers_row_v2")  # type: ignore[index]


def test_the_default_selection_skips_known_tables_missing_from_the_hot_buffer():
    from flusher.registry import skip_missing

    specs = _specs("ledgers_row_v2", "transactions_row_v2", "operations_row_v2")
    kept, missing = skip_missing(specs, {"ledgers_row_v2", "operations_row_v2"}, default=True)
    assert [s.name for s in kept] == ["ledgers_row_v2", "operations_row_v2"] and missing == ["transactions_row_v2"]
    kept, missing = skip_missing(specs, {"ledgers_row_v2"}, default=False)
    assert kept == specs and missing == [], "a table someone named stays, so its flush fails when it is missing"


def test_commit_groups_balance_hot_size_and_are_never_empty():
    sizes = {"big": 100, "mid": 60, "small": 30, "tiny": 10, "unknown": 0}
    groups = commit_groups(sizes, sizes, 2)
    assert groups == [["big", "unknown"], ["mid", "small", "tiny"]]  # 100 against 100, each largest first
    assert commit_groups(sizes, sizes, 1) == [["big", "mid", "small", "tiny", "unknown"]]
    assert commit_groups(["a", "b"], {}, 8) == [["a"], ["b"]]  # more groups than tables: one table each
    assert commit_groups([], {}, 2) == []
