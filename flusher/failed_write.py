"""What a failed lake write left on a local data path: find it, remove it, and say plainly when the disk was full.

A DuckLake INSERT writes its Parquet files before the catalog commit. When the write fails (a full disk, most often),
the rolled-back transaction leaves a partial file and empty ones behind, unreferenced by the catalog; orphan cleanup
would remove them only hours later, while they keep the disk full. Right after the rollback, the flusher (which holds
its lock, so no other writer writes this table) removes the files of the table's own folder that are new since the
attempt started and that no catalog entry names. On an object store (s3:// ...) nothing is done: a failed multipart
upload leaves no object, and listing a bucket is not free.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from flusher.lake import LakeSession

# File times come from the kernel's coarse clock, a few milliseconds behind time.time(); this margin keeps a file
# written at the very start of the attempt. Only unreferenced files of the failed table's own folder are ever removed.
CLOCK_MARGIN_SECONDS = 2.0
_DISK_FULL = ("No space left on device", "Disk quota exceeded", os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))


@dataclass
class Leftovers:
    """The outcome of one cleanup: files removed (with their bytes), and files that could not be removed."""

    folder: Path
    removed: list[Path] = field(default_factory=list)
    bytes_freed: int = 0
    failed: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One clause for the flush error message; empty when there was nothing to remove."""
        parts = []
        if self.removed:
            parts.append(
                f"removed {len(self.removed)} unreferenced file(s) ({self.bytes_freed} bytes) the failed "
                f"write left in {self.folder}"
            )
        if self.failed:
            parts.append(f"could not remove {len(self.failed)} of them ({self.failed[0]})")
        return "; ".join(parts)


def is_disk_full(message: str) -> bool:
    return any(text in message for text in _DISK_FULL)


def explain_disk_full(message: str, data_path: str) -> str:
    """The error message, led by what happened and where when the cause is a full disk (DuckDB's IO error kept)."""
    if not is_disk_full(message):
        return message
    return (
        f"the lake's data path {data_path} is out of space (No space left on device); free space there or move "
        f"ducklake.data_path, the rows stay in PostgreSQL until then. DuckDB said: {message}"
    )


def table_folder(session: LakeSession, table: str) -> Path | None:
    """The local folder DuckLake writes `table`'s files to, from the catalog; None for a remote data path or unknown
    table."""
    data_path = session.settings.ducklake.data_path
    if session.settings.ducklake.is_remote:
        return None
    with session.cursor() as cur:
        row = cur.execute(
            f"SELECT s.path, s.path_is_relative, t.path, t.path_is_relative "
            f"FROM {session.metadata('ducklake_table')} t "
            f"JOIN {session.metadata('ducklake_schema')} s ON s.schema_id = t.schema_id AND s.end_snapshot IS NULL "
            "WHERE t.end_snapshot IS NULL AND s.schema_name = ? AND t.table_name = ?",
            [session.schema, table],
        ).fetchone()
    if row is None:
        return None
    schema_path, schema_relative, table_path, table_relative = row
    schema_dir = Path(data_path) / schema_path if schema_relative else Path(schema_path)
    return schema_dir / table_path if table_relative else Path(table_path)


def referenced_names(session: LakeSession) -> set[str]:
    """The file name of every file any catalog entry names (data and delete files of every table and snapshot, and
    files scheduled for deletion). DuckLake names files by UUID, so a name match is a safe, conservative test."""
    names: set[str] = set()
    with session.cursor() as cur:
        for catalog_table in ("ducklake_data_file", "ducklake_delete_file", "ducklake_files_scheduled_for_deletion"):
            rows = cur.execute(f"SELECT path FROM {session.metadata(catalog_table)}").fetchall()
            names.update(os.path.basename(path.rstrip("/")) for (path,) in rows)
    return names


def unreferenced_since(folder: Path, referenced: set[str], since: float) -> list[Path]:
    """Files under `folder` (recursively: partition folders) changed at or after `since` whose name no catalog entry
    names."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.rglob("*"):
        try:
            if (
                path.is_file()
                and not path.is_symlink()
                and path.name not in referenced
                and path.stat().st_mtime >= since
            ):
                found.append(path)
        except FileNotFoundError:
            continue
    return sorted(found)


def remove_failed_write(session: LakeSession, table: str, started: float) -> Leftovers | None:
    """Remove what a failed write of `table` left: unreferenced files in its folder new since `started` (time.time()).

    Call only after the lake transaction rolled back and while holding the flusher lock. Returns None when nothing
    applies (remote data path, table unknown to the catalog); raises duckdb.Error when the catalog cannot be read,
    and then removes nothing.
    """
    folder = table_folder(session, table)
    if folder is None:
        return None
    referenced = referenced_names(session)
    leftovers = Leftovers(folder)
    for path in unreferenced_since(folder, referenced, started - CLOCK_MARGIN_SECONDS):
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            leftovers.failed.append(f"{path}: {exc.strerror}")
            continue
        leftovers.removed.append(path)
        leftovers.bytes_freed += size
    _remove_empty_folders(folder, leftovers.removed)
    return leftovers


def _remove_empty_folders(folder: Path, removed: list[Path]) -> None:
    """Partition folders the failed write created and that are empty now; never `folder` itself."""
    for parent in sorted({p.parent for p in removed}, key=lambda p: len(p.parts), reverse=True):
        while parent != folder and folder in parent.parents:
            try:
                parent.rmdir()  # only succeeds when empty
            except OSError:
                break
            parent = parent.parent


def cleanup_message(session: LakeSession, table: str, started: float) -> str:
    """Run remove_failed_write and describe the outcome in a clause; never raises (the flush error stays the news)."""
    try:
        leftovers = remove_failed_write(session, table, started)
    except (duckdb.Error, OSError) as exc:
        return f"left its files for orphan cleanup (could not check them against the catalog: {exc})"
    return leftovers.describe() if leftovers else ""
