"""A full disk under a local data path: the flush fails cleanly, leaves no unreferenced file, and the next one works.

The data path lives on a tiny tmpfs (mounting needs root / CAP_SYS_ADMIN; the test is skipped otherwise), almost
filled by a filler file the test can delete to free space again.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from flusher.failed_write import remove_failed_write
from flusher.lake import LakeSession
from tests.helpers import HotEnv, flush, write_config

pytestmark = pytest.mark.usefixtures("prefect_api")

TABLE = "transactions_row_v2"  # wide rows (XDR blobs): a few hundred of them need far more than FREE_BYTES
LEDGERS = 150
LEDGERS_TABLE = "ledgers_row_v2"  # sets the watermark; loaded, not flushed
FREE_BYTES = 8 * 1024  # what the filler leaves free: enough for DuckLake to create files, not to write them


def _mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:  # no mount command, or it hangs
        pytest.skip(f"cannot mount a tmpfs: {exc}")
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): {result.stderr.strip() or result.returncode}")


def _fill(folder: Path, leave: int) -> Path:
    """A filler file that takes all the space of folder's file system but `leave` bytes."""
    filler = folder / "filler"
    block = b"\0" * 4096
    with open(filler, "wb", buffering=0) as out:  # unbuffered: nothing left to fail at close
        try:
            while out.write(block):
                pass
        except OSError:  # ENOSPC: full
            pass
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - leave))
    return filler


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 2 MiB tmpfs, unmounted at the end whatever happens."""
    where = tmp_path / f"small-{uuid.uuid4().hex[:8]}"
    _mount_tmpfs(where, "2m")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _catalog_names(hot: HotEnv) -> set[str]:
    """File names of every file the catalog references."""
    with LakeSession(hot.settings(), attach_hot=False) as lake:
        cur = lake.cursor()
        names = set()
        for table in ("ducklake_data_file", "ducklake_delete_file", "ducklake_files_scheduled_for_deletion"):
            rows = cur.execute(f"SELECT path FROM {lake.metadata(table)}").fetchall()
            names |= {os.path.basename(path) for (path,) in rows}
    return names


def _unreferenced(data_path: Path, hot: HotEnv) -> list[str]:
    referenced = _catalog_names(hot)
    files = [p for p in data_path.rglob("*") if p.is_file()]
    return sorted(str(p.relative_to(data_path)) for p in files if p.name not in referenced)


def test_disk_full_leaves_no_unreferenced_file_and_next_flush_works(hot: HotEnv, small_disk: Path) -> None:
    data_path = small_disk / "lake"
    data_path.mkdir()
    hot.config = write_config(hot, ducklake={"data_path": str(data_path), "data_inlining_row_limit": 0})
    loaded = hot.load(1, LEDGERS, tables=[LEDGERS_TABLE, TABLE])[TABLE]
    filler = _fill(small_disk, FREE_BYTES)

    state = flush(hot, tables=[TABLE])

    assert state.is_failed(), state.message
    assert hot.hot_count_at_or_below(TABLE, LEDGERS) == loaded  # the rows stay in PostgreSQL
    assert _unreferenced(data_path, hot) == [], "the failed write left files no catalog entry references"
    error = hot.execute(
        "SELECT error FROM flusher_state.table_batches WHERE table_name = %s AND status = 'failed'", (TABLE,)
    )[0][0]
    assert f"data path {data_path}/ is out of space" in error, error
    assert "No space left on device" in error and "removed 1 unreferenced file(s)" in error, error

    filler.unlink()  # space again
    state = flush(hot, tables=[TABLE])

    assert state.is_completed(), state.message
    assert hot.hot_count_at_or_below(TABLE, LEDGERS) == 0
    assert hot.assert_exactly_once([TABLE]) == {TABLE: loaded}
    assert _unreferenced(data_path, hot) == []


OTHER = "operations_row_v2"


def test_cleanup_removes_only_new_unreferenced_files_of_the_failed_table(hot: HotEnv) -> None:
    """Referenced files (even brand-new ones), older files and other tables' folders are never touched."""
    hot.config = write_config(hot, ducklake={"data_inlining_row_limit": 0})  # every row in a Parquet file
    hot.load(1, 5, tables=[LEDGERS_TABLE, TABLE, OTHER])
    state = flush(hot, tables=[TABLE, OTHER])
    assert state.is_completed(), state.message
    bronze = Path(hot.settings().ducklake.data_path) / "bronze"
    own, other = bronze / TABLE, bronze / OTHER
    started = time.time()
    referenced = sorted(p for p in own.rglob("*") if p.is_file())
    assert referenced
    for path in referenced:
        os.utime(path)  # as new as the failed attempt: only the catalog says they must stay
    partition = next(p.parent for p in referenced)
    stray = partition / "ducklake-stray.parquet"
    stray.write_bytes(b"PAR1 partial")
    empty = partition / "ducklake-empty.parquet"
    empty.touch()
    new_partition = own / "ledger_range=999999"
    new_partition.mkdir()
    (new_partition / "ducklake-new.parquet").touch()
    old = partition / "ducklake-old.parquet"
    old.touch()
    os.utime(old, (started - 3600, started - 3600))
    other_stray = other / "ducklake-stray.parquet"
    other_stray.touch()

    with LakeSession(hot.settings(), attach_hot=False) as lake:
        leftovers = remove_failed_write(lake, TABLE, started)

    assert leftovers is not None
    assert sorted(leftovers.removed) == sorted([stray, empty, new_partition / "ducklake-new.parquet"])
    assert leftovers.bytes_freed == len(b"PAR1 partial") and not leftovers.failed
    assert all(p.exists() for p in referenced)
    assert old.exists() and other_stray.exists()
    assert not new_partition.exists() and own.is_dir()
    hot.assert_exactly_once([TABLE, OTHER])
