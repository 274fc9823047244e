"""DuckDB spills a batch larger than memory_limit to disk: each flusher DuckDB into a folder of its own.

DuckDB's default, `.tmp` in the working directory with the same file names in every process, let two DuckDBs
spilling from one working directory write into each other's files; the first to close deleted the other's, which
then failed ("Cannot open file .tmp/duckdb_temp_storage_DEFAULT-0.tmp") or crashed."""

from __future__ import annotations

import tempfile
from pathlib import Path

from flusher.lake import DUCKLAKE_ROW_GROUP_ROWS, connect_duckdb, partition_flush_rows, spill_directory

# Far more than the limit below, so DuckDB must spill to keep it.
SPILL = "CREATE TEMP TABLE t AS SELECT i, repeat('x', 100) || i AS s FROM range(1500000) r(i)"


def test_every_duckdb_gets_a_new_spill_folder_under_the_temporary_folder():
    first, second = spill_directory(), spill_directory()
    try:
        assert first != second and first.is_dir() and second.is_dir()
        assert first.parent == Path(tempfile.gettempdir())
    finally:
        first.rmdir()
        second.rmdir()


def test_two_duckdbs_spilling_from_one_working_directory_keep_their_own_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where DuckDB's default `.tmp` would be
    folders = [tmp_path / "a", tmp_path / "b"]
    a, b = (connect_duckdb(1, "64MB", folder) for folder in folders)
    try:
        for db, folder in zip((a, b), folders, strict=True):
            assert db.execute("SELECT current_setting('temp_directory')").fetchone()[0] == str(folder)
            db.execute(SPILL)
            assert any(folder.iterdir()), "the batch was meant to spill"
        assert not (tmp_path / ".tmp").exists()
        b.close()  # the first to close took the other's spill files with it
        assert a.execute("SELECT count(*), max(length(s)) FROM t").fetchone() == (1_500_000, 107)
    finally:
        a.close()
        b.close()


def test_partitioned_inserts_write_out_one_row_group_at_a_time(tmp_path):
    """DuckDB's default held each ledger_range partition's rows until 524,288 of them, so a table's whole batch
    stayed in memory or the spill folder until its INSERT ended (bench/results/mem-xl-breakdown.md)."""
    assert partition_flush_rows(32768) == 32768 and partition_flush_rows(None) == DUCKLAKE_ROW_GROUP_ROWS
    db = connect_duckdb(1, "256MB", tmp_path, partition_flush_rows(32768))
    try:
        assert db.execute("SELECT current_setting('partitioned_write_flush_threshold')").fetchone()[0] == 32768
    finally:
        db.close()
