"""Lake upkeep SQL in one place: file statistics, inlined-data flush, merges, snapshot expiry and file cleanup."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flusher.adoption import label_owner
from flusher.lake import LakeSession
from flusher.state import StateStore
from flusher.transfer import labelled_snapshots


@dataclass(frozen=True)
class FileStats:
    """Files of one table: `live` are read by the current snapshot, `stored` by any snapshot not yet expired."""

    live_files: int
    live_bytes: int
    stored_files: int
    stored_bytes: int


@dataclass(frozen=True)
class Cutoffs:
    """What maintenance may touch: snapshots older than `snapshots`, freed files older than `freed_files`, ..."""

    snapshots: datetime
    freed_files: datetime
    orphan_files: datetime

    @classmethod
    def from_settings(
        cls, retention_days: float, cleanup_hours: float, orphan_hours: float, now: datetime | None = None
    ) -> Cutoffs:
        now = now or datetime.now(UTC)
        return cls(
            now - timedelta(days=retention_days),
            now - timedelta(hours=cleanup_hours),
            now - timedelta(hours=orphan_hours),
        )


def lake_tables(lake: LakeSession) -> list[str]:
    """The tables of the Bronze schema."""
    return sorted(lake.columns_by_table(lake.lake, lake.schema))


def unconfirmed_commits(lake: LakeSession, state: StateStore, tables: list[str]) -> dict[str, list[int]]:
    """Table -> lake snapshots committed by batches never confirmed as deleted (a later flush's undo needs them).

    A batch that failed before its lake commit has nothing in the lake to undo, so it does not count.
    """
    out = {}
    owner = label_owner(state.identity())
    with lake.cursor() as cur:
        for table in tables:
            snapshots = labelled_snapshots(lake, cur, table, state.open_batches(table), owner)
            if snapshots:
                out[table] = snapshots
    return out


def file_stats(lake: LakeSession, tables: list[str]) -> dict[str, FileStats]:
    """Live and stored data files and bytes per table."""
    out = {}
    with lake.cursor() as cur:
        stored = dict(
            (name, (files, size))
            for name, files, size in cur.execute(
                f"SELECT t.table_name, count(f.data_file_id), coalesce(sum(f.file_size_bytes), 0) "
                f"FROM {lake.metadata('ducklake_table')} t "
                f"JOIN {lake.metadata('ducklake_schema')} s ON s.schema_id = t.schema_id AND s.end_snapshot IS NULL "
                f"LEFT JOIN {lake.metadata('ducklake_data_file')} f ON f.table_id = t.table_id "
                "WHERE t.end_snapshot IS NULL AND s.schema_name = ? GROUP BY t.table_name",
                [lake.schema],
            ).fetchall()
        )
        for table in tables:
            live, size = cur.execute(
                "SELECT count(*), coalesce(sum(data_file_size_bytes), 0) FROM ducklake_list_files(?, ?, schema => ?)",
                [lake.lake, table, lake.schema],
            ).fetchone()
            out[table] = FileStats(live, int(size), *(int(v) for v in stored.get(table, (0, 0))))
    return out


def files_awaiting_deletion(lake: LakeSession) -> int:
    """Files no snapshot reads any more (merged away or expired), waiting for cleanup past their age limit."""
    with lake.cursor() as cur:
        return cur.execute(f"SELECT count(*) FROM {lake.metadata('ducklake_files_scheduled_for_deletion')}").fetchone()[
            0
        ]


def flush_inlined(lake: LakeSession) -> int:
    """Write rows inlined in the catalog to Parquet files; returns the rows written."""
    with lake.cursor() as cur:
        rows = cur.execute("CALL ducklake_flush_inlined_data(?)", [lake.lake]).fetchall()
    return sum(r[2] for r in rows)


def merge_table(lake: LakeSession, table: str, max_files: int) -> tuple[int, int]:
    """Merge a table's small adjacent files (at most max_files read at once); returns files read and written."""
    with lake.cursor() as cur:
        rows = cur.execute(
            "CALL ducklake_merge_adjacent_files(?, ?, schema => ?, max_compacted_files => ?)",
            [lake.lake, table, lake.schema, max_files],
        ).fetchall()
    return sum(r[2] for r in rows), sum(r[3] for r in rows)


def expire_snapshots(lake: LakeSession, older_than: datetime, dry_run: bool) -> list[int]:
    """Expire snapshots older than the cutoff (DuckLake always keeps the latest); returns their ids."""
    with lake.cursor() as cur:
        rows = cur.execute(
            "CALL ducklake_expire_snapshots(?, dry_run => ?, older_than => ?)", [lake.lake, dry_run, older_than]
        ).fetchall()
    return sorted(r[0] for r in rows)


def _file_procedure(lake: LakeSession, procedure: str, older_than: datetime, dry_run: bool) -> list[str]:
    """CALL a DuckLake file-deleting procedure with an age cutoff (never cleanup_all); the paths it names."""
    with lake.cursor() as cur:
        rows = cur.execute(
            f"CALL {procedure}(?, dry_run => ?, older_than => ?)", [lake.lake, dry_run, older_than]
        ).fetchall()
    return [r[0] for r in rows]


def cleanup_freed_files(lake: LakeSession, older_than: datetime, dry_run: bool) -> list[str]:
    """Delete files that expired snapshots freed, once they were scheduled before the cutoff."""
    return _file_procedure(lake, "ducklake_cleanup_old_files", older_than, dry_run)


def delete_orphans(lake: LakeSession, older_than: datetime, dry_run: bool) -> list[str]:
    """Delete files no snapshot knows that are older than the cutoff (a younger one may be a write in progress)."""
    return _file_procedure(lake, "ducklake_delete_orphaned_files", older_than, dry_run)
