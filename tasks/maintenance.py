"""MAINTAIN: one lake upkeep step per task; SQL lives in flusher/maintenance.py, the order in flows/maintenance.py."""

from __future__ import annotations

import time
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flusher import maintenance as sql
from flusher.lake import LakeSession
from flusher.maintenance_report import StepResult
from flusher.state import StateStore

_TASK = {"cache_policy": NO_CACHE, "persist_result": False}


def _done(step: str, started: float, what: str, items: list[Any] | None = None) -> StepResult:
    get_run_logger().info("%s: %s", step, what)
    return StepResult(what, time.perf_counter() - started, items or [])


@task(name="find-unconfirmed-commits", **_TASK)
def find_unconfirmed(lake: LakeSession, state: StateStore, tables: list[str]) -> dict[str, list[int]]:
    """Lake commits whose PostgreSQL delete was never confirmed; maintenance must not run while any exist."""
    return sql.unconfirmed_commits(lake, state, tables)


@task(name="measure-files", **_TASK)
def measure_files(lake: LakeSession, tables: list[str]) -> tuple[dict[str, sql.FileStats], int]:
    """Per table live and stored files, and the catalog's count of files awaiting deletion."""
    return sql.file_stats(lake, tables), sql.files_awaiting_deletion(lake)


@task(name="flush-inlined-data", **_TASK)
def flush_inlined_data(lake: LakeSession, dry_run: bool) -> StepResult:
    """Rows DuckLake kept in the catalog (small inserts) go to Parquet, so merges and readers see files."""
    started = time.perf_counter()
    if dry_run:
        return _done("flush inlined data", started, "would write rows inlined in the catalog to Parquet")
    return _done("flush inlined data", started, f"{sql.flush_inlined(lake)} rows written to Parquet")


@task(name="merge-small-files", **_TASK)
def merge_small_files(lake: LakeSession, tables: list[str], max_files: int, dry_run: bool) -> StepResult:
    """Merge adjacent small files per table; old files stay for time travel until their snapshots expire."""
    started = time.perf_counter()
    if dry_run:
        return _done("merge small files", started, "would merge adjacent small files of each table")
    read = written = 0
    for table in tables:
        r, w = sql.merge_table(lake, table, max_files)
        read, written = read + r, written + w
    return _done("merge small files", started, f"{read} files merged into {written}")


@task(name="expire-snapshots", **_TASK)
def expire_old_snapshots(lake: LakeSession, cutoffs: sql.Cutoffs, dry_run: bool) -> StepResult:
    """Expire snapshots older than the retention; younger ones (and the latest) keep time travel working."""
    started = time.perf_counter()
    expired = sql.expire_snapshots(lake, cutoffs.snapshots, dry_run)
    verb = "would expire" if dry_run else "expired"
    return _done("expire snapshots", started, f"{verb} {len(expired)} snapshots", expired)


@task(name="cleanup-files", **_TASK)
def cleanup_files(lake: LakeSession, cutoffs: sql.Cutoffs, dry_run: bool) -> StepResult:
    """Delete files freed by expired snapshots and orphaned files, each only past its age limit."""
    started = time.perf_counter()
    freed = sql.cleanup_freed_files(lake, cutoffs.freed_files, dry_run)
    orphans = sql.delete_orphans(lake, cutoffs.orphan_files, dry_run)
    verb = "would delete" if dry_run else "deleted"
    return _done(
        "clean up files", started, f"{verb} {len(freed)} freed and {len(orphans)} orphaned files", freed + orphans
    )
