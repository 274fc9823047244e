"""Lake safety and layout: start-up never destroys history, no silent catalog migration, ledger_range partitions."""

from __future__ import annotations

import pytest

from flusher.lake import LakeError, LakeSession
from flusher.plan import Parallelism
from tests.helpers import ENABLED, flush, write_config

# prefect_api per test: the tests that only open the lake need no Prefect server.
PREFECT = pytest.mark.usefixtures("prefect_api")


def _with_concurrency(settings, concurrency: int):
    return settings.model_copy(update={"flush": settings.flush.model_copy(update={"concurrency": concurrency})})


def _snapshot_ids(hot) -> list[int]:
    return [r[0] for r in hot.execute("SELECT snapshot_id FROM bronze_meta.ducklake_snapshot ORDER BY 1")]


@PREFECT
def test_init_and_flush_reruns_keep_tables_and_history(hot):
    hot.load(1, 5)
    assert flush(hot).is_completed()
    first = _snapshot_ids(hot)
    for _ in range(2):
        result = hot.run_cli("init")
        assert result.returncode == 0, result.stderr
        assert "0 tables created" in result.stdout
    hot.load(6, 5)
    assert flush(hot).is_completed()
    after = _snapshot_ids(hot)
    assert after[: len(first)] == first and len(after) > len(first), "history was rewritten or dropped"
    assert hot.assert_exactly_once()["ledgers_row_v2"] == 10
    with LakeSession(hot.settings(), attach_hot=False) as lake:
        assert (
            lake.cursor()
            .execute(f"SELECT count(*) FROM {lake.table('ledgers_row_v2')} AT (VERSION => ?)", [first[-1]])
            .fetchone()[0]
            == 5
        ), "time travel to the first flush still works"
        assert set(lake.partition_columns()) >= set(ENABLED), "every Bronze table is partitioned"


def test_each_session_spills_into_a_folder_of_its_own_gone_when_it_closes_and_bounds_partition_buffers(
    hot, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # where DuckDB's default `.tmp`, shared by every DuckDB started here, would be
    with LakeSession(hot.settings(), attach_hot=False) as a, LakeSession(hot.settings(), attach_hot=False) as b:
        folders = [a.spill_dir, b.spill_dir]
        assert folders[0] != folders[1] and all(f.is_dir() for f in folders)
        assert [s.cursor().execute("SELECT current_setting('temp_directory')").fetchone()[0] for s in (a, b)] == [
            str(f) for f in folders
        ]
        # one row group (the config's parquet_row_group_size) per partitioned write-out, not DuckDB's 524,288 rows
        assert a.cursor().execute("SELECT current_setting('partitioned_write_flush_threshold')").fetchone()[0] == 32768
    assert not any(f.exists() for f in folders) and not (tmp_path / ".tmp").exists()


def test_existing_unpartitioned_tables_get_partitioned_and_a_choice_is_kept(hot):
    hot.config = write_config(hot, ducklake={"partition_by": None})
    with LakeSession(hot.settings(), attach_hot=False) as lake:
        lake.ensure_tables(["ledgers_row_v2", "trades_row_v1"])
        assert lake.partition_columns() == {}
        lake.cursor().execute(f"ALTER TABLE {lake.table('trades_row_v1')} SET PARTITIONED BY (ledger_sequence)")
    hot.config = write_config(hot, ducklake={"partition_by": "ledger_range"})
    with LakeSession(hot.settings(), attach_hot=False) as lake:
        lake.ensure_tables(["ledgers_row_v2", "trades_row_v1"])
        assert lake.partition_columns() == {"ledgers_row_v2": ["ledger_range"], "trades_row_v1": ["ledger_sequence"]}
        before = len(_snapshot_ids(hot))
        lake.ensure_tables(["ledgers_row_v2", "trades_row_v1"])
        assert len(_snapshot_ids(hot)) == before, "an already partitioned table is not altered again"


@PREFECT
def test_an_older_catalog_format_is_never_migrated_without_the_setting(hot):
    with LakeSession(hot.settings(), attach_hot=False) as lake:
        lake.ensure_tables(["ledgers_row_v2"])
    hot.execute(
        "UPDATE bronze_meta.ducklake_metadata SET value = '0.3' WHERE key = 'version'"
    )  # as an old writer left it
    hot.load(1, 3)
    with pytest.raises(LakeError, match="allow_catalog_migration") as raised:
        LakeSession(hot.settings(), attach_hot=False)
    assert "NOT migrated" in str(raised.value)
    assert hot.execute("SELECT value FROM bronze_meta.ducklake_metadata WHERE key = 'version'") == [("0.3",)]
    state = flush(hot)
    assert state.is_failed() and "allow_catalog_migration" in state.message
    assert hot.hot_count_at_or_below("ledgers_row_v2", 3) == 3


@PREFECT
def test_configured_parquet_options_reach_the_files_and_are_set_once(hot):
    hot.config = write_config(hot, ducklake={"parquet_compression": "zstd", "parquet_row_group_size": 4096})
    hot.load(1, 10)
    with LakeSession(hot.settings(), attach_hot=False) as lake:
        lake.ensure_tables(ENABLED)
        assert lake.ensure_write_options() == {}, "options already in the catalog are not written again"
    assert flush(hot).is_completed()
    with LakeSession(hot.settings(), attach_hot=False) as lake:
        cur = lake.cursor()
        files = [
            r[0]
            for r in cur.execute(
                "SELECT data_file FROM ducklake_list_files(?, 'effects_row_v1', schema => ?)", [lake.lake, lake.schema]
            ).fetchall()
        ]
        assert files, "the flush wrote Parquet files"
        codecs = {r[0] for r in cur.execute("SELECT DISTINCT compression FROM parquet_metadata(?)", [files]).fetchall()}
        assert codecs == {"ZSTD"}
    hot.config = write_config(hot, ducklake={"parquet_row_group_size": None})  # null: the lake's choice stands
    with LakeSession(hot.settings(), attach_hot=False) as lake:
        assert lake.ensure_write_options() == {}
    hot.config = write_config(hot)  # the default row group size replaces another value; compression is left alone
    with LakeSession(hot.settings(), attach_hot=False) as lake:
        assert lake.ensure_write_options() == {"parquet_row_group_size": "32768"}
    assert hot.assert_exactly_once()["ledgers_row_v2"] == 10


def test_duckdb_threads_leave_a_core_per_concurrent_flush_unless_configured(hot, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    for queries, expected in ((1, 4), (2, 3), (4, 1)):
        threads = Parallelism.from_settings(_with_concurrency(hot.settings(), queries)).duckdb_threads
        with LakeSession(hot.settings(), attach_hot=False, threads=threads) as lake:
            assert lake.cursor().execute("SELECT current_setting('threads')").fetchone()[0] == expected
    with LakeSession(hot.settings(), attach_hot=False) as lake:  # one query at a time: every core
        assert lake.cursor().execute("SELECT current_setting('threads')").fetchone()[0] == 4
    hot.config = write_config(hot, ducklake={"threads": 2})
    threads = Parallelism.from_settings(_with_concurrency(hot.settings(), 4)).duckdb_threads
    with LakeSession(hot.settings(), attach_hot=False, threads=threads) as lake:
        assert lake.cursor().execute("SELECT current_setting('threads')").fetchone()[0] == 2


def test_the_adoption_check_finds_rows_in_files_and_inlined_and_none_once_deleted(hot):
    """The catalog query that narrows the adoption check sees every table holding rows, and only those."""
    from flusher.adoption import tables_that_may_hold_rows, tables_with_rows

    with LakeSession(hot.settings(), attach_hot=False) as lake:
        lake.ensure_tables(["ledgers_row_v2", "transactions_row_v2", "operations_row_v2"])
        assert tables_that_may_hold_rows(lake) == [] and tables_with_rows(lake) == []
        cur = lake.cursor()
        inlined, in_file, emptied = (
            lake.table(t) for t in ("ledgers_row_v2", "transactions_row_v2", "operations_row_v2")
        )
        cur.execute(f"INSERT INTO {inlined} (sequence) VALUES (1)")  # under the inlining limit: catalog rows
        cur.execute(f"INSERT INTO {in_file} (ledger_sequence) SELECT range FROM range(100)")  # a Parquet file
        cur.execute(f"INSERT INTO {emptied} (ledger_sequence) VALUES (1)")
        cur.execute(f"DELETE FROM {emptied}")
        held = ["ledgers_row_v2", "transactions_row_v2"]
        assert tables_with_rows(lake) == held
        assert set(held) <= set(tables_that_may_hold_rows(lake)) <= {*held, "operations_row_v2"}
