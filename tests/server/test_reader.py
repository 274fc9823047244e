"""Readers of hot ∪ lake (C9): every row committed to the hot buffer before a read is in it exactly once, whatever the
flusher is doing (flushing, between a lake commit and its delete, killed there, maintaining) and with late rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import duckdb
import psycopg
import pytest
from psycopg import sql

from flusher.failpoints import ENV as failpoints_env
from flusher.flows.maintenance import bronze_maintenance
from flusher.hot import make_pool
from flusher.quoting import quote_ident
from flusher.reader import open_reader
from flusher.state import StateStore
from tests.helpers import ROOT, flush, write_config

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]

TABLES = ["ledgers_row_v2", "transactions_row_v2", "effects_row_v1"]
LATE = ["transactions_row_v2", "effects_row_v1"]  # ledgers_row_v2 has one row per ledger: no late rows there


def _config(hot) -> None:
    hot.config = write_config(
        hot,
        flush={"tables": TABLES},
        ducklake={"data_inlining_row_limit": 0},  # Parquet files from the first flush: maintenance has work
        maintenance={"file_cleanup_age_hours": 0},
    )


class ReadLoop(threading.Thread):
    """Reads every table's union in a loop; per read: every key audit.<table> held before the read is there once."""

    def __init__(self, hot, reader) -> None:
        super().__init__(daemon=True)
        self.hot, self.reader, self.stop = hot, reader, threading.Event()
        self.keys = {t: hot.primary_key(t) for t in TABLES}
        self.reads, self.error = 0, None

    def run(self) -> None:
        try:
            with psycopg.connect(self.hot.uri, autocommit=True) as conn:
                while not self.stop.is_set():
                    for table in TABLES:
                        self.check(conn, table)
                    self.reads += 1
                    time.sleep(0.02)  # leave the flusher some of the machine
        except BaseException as exc:  # noqa: BLE001 - surfaced by the test
            self.error = exc

    def check(self, conn: psycopg.Connection, table: str) -> None:
        columns = self.keys[table]
        audit_sql = sql.SQL("SELECT {} FROM audit.{}").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table)
        )
        before = set(conn.execute(audit_sql).fetchall())  # committed before the read starts
        seen = Counter(self.reader.query(f"SELECT {', '.join(map(quote_ident, columns))} FROM {quote_ident(table)}"))
        twice = [k for k, n in seen.items() if n > 1]
        missing = before - set(seen)
        assert not twice, f"read {self.reads}: {len(twice)} rows of {table} twice, e.g. {twice[0]}"
        assert not missing, f"read {self.reads}: {len(missing)} rows of {table} missing, e.g. {next(iter(missing))}"

    def wait_reads(self, n: int) -> None:
        """Wait until `n` more reads completed (or the loop failed)."""
        target = self.reads + n
        while self.reads < target and self.is_alive():
            time.sleep(0.02)


class LedgerWriter(threading.Thread):
    """New ledgers in all TABLES, one transaction each, and now and then late rows for old ledgers."""

    def __init__(self, hot, first: int) -> None:
        super().__init__(daemon=True)
        self.hot, self.next, self.stop, self.error, self.late = hot, first, threading.Event(), None, 0

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.hot.load(self.next, 1, tables=TABLES)
                self.next += 1
                if self.next % 4 == 0:
                    self.late += 1
                    self.hot.load(max(1, self.next - 8), 2, tables=LATE, first_row=100 + self.late)
                time.sleep(0.05)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the test
            self.error = exc


def _run(hot, *args: str, failpoints: str | None = None, code: int = 0) -> None:
    done = hot.run_cli(*args, failpoints=failpoints)
    assert done.returncode == code, done.stdout + done.stderr


def _flush(hot, monkeypatch, failpoints: str | None = None) -> None:
    """An in-process flow run (no interpreter start-up); `failpoints` armed for it alone."""
    with monkeypatch.context() as m:
        if failpoints:
            m.setenv(failpoints_env, failpoints)
        state = flush(hot)
    assert state.is_completed(), state.message


def test_every_read_sees_each_row_once_through_flushes_a_kill_late_rows_and_maintenance(hot, monkeypatch):
    _config(hot)
    hot.load(1, 6, tables=TABLES)
    _flush(hot, monkeypatch)
    with open_reader(hot.config) as reader:
        loop, writer = ReadLoop(hot, reader), LedgerWriter(hot, 7)
        loop.start()
        writer.start()
        try:
            # Each table waits between its lake commit and its delete: reads fall in between.
            _flush(hot, monkeypatch, "after_lake_commit=sleep=0.5")
            # Killed after a lake commit: that commit stays unconfirmed, its rows in both places.
            _run(hot, "flush", failpoints="after_lake_commit:transactions_row_v2=kill", code=-signal.SIGKILL)
            loop.wait_reads(3)
            assert reader.read_point("transactions_row_v2") < _lake_head(hot), "the kill left no unconfirmed commit"
            _flush(hot, monkeypatch, "before_lake_commit=sleep=0.3")  # undoes it, copies the late rows
            hot.execute("UPDATE bronze_meta.ducklake_snapshot SET snapshot_time = snapshot_time - interval '30 days'")
            files = _live_files(hot)
            maintained = bronze_maintenance(config_path=str(hot.config), return_state=True)
            assert maintained.is_completed(), maintained.message
            assert _live_files(hot) < files, "the maintenance run merged nothing: reads across a merge untested"
            loop.wait_reads(3)
            _flush(hot, monkeypatch)
        finally:
            writer.stop.set()
            writer.join(timeout=60)
            loop.wait_reads(2)
            loop.stop.set()
            loop.join(timeout=60)
    assert writer.error is None, writer.error
    assert loop.error is None, loop.error
    assert loop.reads >= 10 and writer.late >= 2, (loop.reads, writer.late)
    hot.assert_exactly_once(TABLES)


def _lake_head(hot) -> int:
    return hot.execute("SELECT max(snapshot_id) FROM bronze_meta.ducklake_snapshot")[0][0]


def _live_files(hot) -> int:
    return hot.execute("SELECT count(*) FROM bronze_meta.ducklake_data_file WHERE end_snapshot IS NULL")[0][0]


def test_as_of_a_ledger_reads_the_same_rows_later_and_waits_for_every_table(hot):
    _config(hot)
    hot.load(1, 6, tables=TABLES)
    _run(hot, "flush")
    _upgrade_fills_the_read_points(hot)
    with open_reader(hot.config) as reader:
        first = reader.query_as_of("effects_row_v1", 4)
        assert len(first) == hot.execute("SELECT count(*) FROM audit.effects_row_v1 WHERE ledger_sequence <= 4")[0][0]
        assert reader.as_of(7) is None, "no table was flushed up to ledger 7"
        with pytest.raises(duckdb.Error, match="read-only|read only"):  # the lake is attached READ_ONLY
            reader.connection.execute(f"CREATE TABLE {reader.session.table('not_here')} (a INT)")
        hot.load(3, 2, tables=LATE, first_row=100)  # late rows for ledgers 3 and 4
        hot.load(7, 2, tables=TABLES)
        _run(hot, "flush")
        assert sorted(reader.query_as_of("effects_row_v1", 4)) == sorted(first), "an as-of read changed"
        assert reader.as_of(7) is not None
        total = reader.query("SELECT count(*) FROM effects_row_v1 WHERE ledger_sequence <= 4")[0][0]
        assert total == len(first) + 2 * 3, "the live view has the late rows"


def _upgrade_fills_the_read_points(hot) -> None:
    """A state from before confirmed_batches.lake_snapshot_id gets it from table_batches when the schema is ensured."""
    wanted = dict(hot.execute("SELECT table_name, lake_snapshot_id FROM flusher_state.confirmed_batches"))
    assert len(wanted) == len(TABLES) and all(v is not None and v > 0 for v in wanted.values()), wanted
    hot.execute("ALTER TABLE flusher_state.confirmed_batches DROP COLUMN lake_snapshot_id")
    pool = make_pool(hot.settings().postgres)
    with pool:
        state = StateStore(pool, "flusher_state")
        state.ensure()
        assert {t: state.read_point(t) for t in TABLES} == wanted
        assert state.read_point("no_such_table") == -1


def test_the_reader_loads_its_extensions_from_the_wheels_with_no_network(hot, tmp_path):
    _config(hot)
    hot.load(1, 3, tables=TABLES)
    _run(hot, "flush")
    hot.load(4, 1, tables=TABLES)
    dead = "http://127.0.0.1:9"  # nothing listens: any download would fail
    env = {**os.environ, "HOME": str(tmp_path), "http_proxy": dead, "https_proxy": dead}
    env.update({"HTTP_PROXY": dead, "HTTPS_PROXY": dead})
    script = (
        "import sys; from flusher.reader import open_reader\n"
        "with open_reader(sys.argv[1]) as r: print(r.query('SELECT count(*) FROM ledgers_row_v2')[0][0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(hot.config)], env=env, capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "4"
    assert not (tmp_path / ".duckdb").exists(), "DuckDB installed an extension under HOME"


def _readme_view(name: str) -> str:
    """The CREATE VIEW of README "Reading the lake" (the SQL recipe for other clients), renamed to `name`."""
    text = (ROOT / "README.md").read_text()
    start = text.index("CREATE VIEW trades_row_v1 AS")
    return text[start : text.index(";\n```", start)].replace("CREATE VIEW trades_row_v1", f"CREATE VIEW {name}", 1)


def test_raw_parquet_readers_go_wrong_and_the_documented_recipes_do_not(hot, monkeypatch):
    import polars as pl
    import pyarrow.dataset as ds

    hot.config = write_config(
        hot, flush={"tables": ["ledgers_row_v2", "trades_row_v1"]}, ducklake={"data_inlining_row_limit": 0}
    )
    for first in (1, 4, 7):
        hot.load(first, 3, tables=["ledgers_row_v2", "trades_row_v1"])
        _flush(hot, monkeypatch)
    hot.execute("UPDATE bronze_meta.ducklake_snapshot SET snapshot_time = snapshot_time - interval '30 days'")
    assert bronze_maintenance(config_path=str(hot.config), return_state=True).is_completed()
    hot.load(10, 2, tables=["ledgers_row_v2", "trades_row_v1"])  # in the hot buffer only
    total = hot.execute("SELECT count(*) FROM audit.trades_row_v1")[0][0]
    in_lake = hot.execute("SELECT count(*) FROM audit.trades_row_v1 WHERE ledger_sequence <= 9")[0][0]
    files = sorted(Path(hot.settings().ducklake.data_path).rglob("trades_row_v1/**/*.parquet"))

    # Globbing the files after a merge counts the merged rows twice (the replaced files are not deleted yet).
    paths = [str(f) for f in files]
    with pytest.raises(pl.exceptions.SchemaError, match="_ducklake_internal_snapshot_id"):  # merged files carry it
        pl.scan_parquet(paths).select(pl.len()).collect()
    assert pl.scan_parquet(paths, extra_columns="ignore").select(pl.len()).collect().item() == 2 * in_lake
    # pyarrow's hive partitioning: ledger_range int32 from the folder names, int64 in the files.
    with pytest.raises(Exception, match="ledger_range"):
        ds.dataset(files[0].parents[1], format="parquet", partitioning="hive").to_table()

    with open_reader(hot.config) as reader:
        arrow = reader.connection.execute("SELECT * FROM trades_row_v1").to_arrow_table()
        assert arrow.num_rows == total
        assert pl.from_arrow(arrow).height == total
        assert reader.connection.execute("SELECT * FROM trades_row_v1").pl().height == total
        reader.connection.execute(_readme_view("readme_trades"))
        assert reader.query("SELECT count(*) FROM readme_trades")[0][0] == total
