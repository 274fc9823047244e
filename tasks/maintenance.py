"""MAINTAIN: one lake upkeep step per task, plus the report; SQL lives in flusher/maintenance.py."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flusher import maintenance as sql
from flusher.config import MaintenanceSettings
from flusher.lake import LakeSession
from flusher.secrets import MaskedMessage
from flusher.state import StateStore

_TASK = {"cache_policy": NO_CACHE, "persist_result": False}


@dataclass(frozen=True)
class StepResult:
    what: str  # one line for the report
    seconds: float
    items: list[Any] = field(default_factory=list)  # expired snapshot ids or deleted file paths


@dataclass
class MaintenanceReport:
    dry_run: bool
    cutoffs: sql.Cutoffs
    before: dict[str, sql.FileStats]
    after: dict[str, sql.FileStats] = field(default_factory=dict)
    steps: dict[str, StepResult] = field(default_factory=dict)
    seconds: float = 0.0
    awaiting_deletion: tuple[int, int] = (0, 0)  # files scheduled for deletion, before and after

    @property
    def expired(self) -> list[int]:
        return self.steps["expire snapshots"].items if "expire snapshots" in self.steps else []

    @property
    def deleted_files(self) -> int:
        return len(self.steps["clean up files"].items) if "clean up files" in self.steps else 0

    def headline(self) -> str:
        live = (sum(s.live_files for s in self.before.values()), sum(s.live_files for s in self.after.values()))
        stored = (sum(s.stored_files for s in self.before.values()), sum(s.stored_files for s in self.after.values()))
        verb = "would expire" if self.dry_run else "expired"
        return (
            f"{'dry run: ' if self.dry_run else ''}live files {live[0]} -> {live[1]}, stored files {stored[0]} -> "
            f"{stored[1]}, awaiting deletion {self.awaiting_deletion[0]} -> {self.awaiting_deletion[1]}; "
            f"{verb} {len(self.expired)} snapshots older than {self.cutoffs.snapshots:%Y-%m-%d %H:%M} UTC; "
            f"{'would delete' if self.dry_run else 'deleted'} {self.deleted_files} files in {self.seconds:.1f}s"
        )

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for table, b in self.before.items():
            a = self.after.get(table, b)
            rows.append(
                {
                    "table": table,
                    "live_files_before": b.live_files,
                    "live_files_after": a.live_files,
                    "stored_files_before": b.stored_files,
                    "stored_files_after": a.stored_files,
                    "stored_bytes_before": b.stored_bytes,
                    "stored_bytes_after": a.stored_bytes,
                    "seconds": "",
                }
            )
        for step, result in self.steps.items():  # the steps' own lines: what each did and how long it took
            rows.append({"table": f"({step}) {result.what}", "seconds": round(result.seconds, 3)})
        return rows

    def markdown(self) -> str:
        lines = [f"# Bronze maintenance{' (dry run)' if self.dry_run else ''}", f"- {self.headline()}"]
        lines += [f"- {step}: {r.what} ({r.seconds:.2f}s)" for step, r in self.steps.items()]
        return "\n".join(lines)


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


class MaintenanceRefused(MaskedMessage, RuntimeError):
    """Maintenance did not start: a lake commit still awaits its PostgreSQL delete."""


def run_maintenance(lake: LakeSession, state: StateStore, m: MaintenanceSettings, dry_run: bool) -> MaintenanceReport:
    """Every maintenance step in order; the caller holds the flusher lock. Raises MaintenanceRefused when blocked."""
    started = time.perf_counter()
    tables = sql.lake_tables(lake)
    blockers = find_unconfirmed(lake, state, tables)
    if blockers:
        # The next flush undoes these commits by snapshot id; merging or expiring them first could lose that.
        detail = "; ".join(f"{t} (lake snapshots {s})" for t, s in sorted(blockers.items()))
        raise MaintenanceRefused(
            f"refused: {len(blockers)} table(s) have lake commits whose PostgreSQL delete was never confirmed: "
            f"{detail}. Run a flush (it undoes and re-copies them), then maintenance again."
        )
    cutoffs = sql.Cutoffs.from_settings(m.snapshot_retention_days, m.file_cleanup_age_hours, m.orphan_file_age_hours)
    before, awaiting = measure_files(lake, tables)
    report = MaintenanceReport(dry_run, cutoffs, before, awaiting_deletion=(awaiting, awaiting))
    report.steps["flush inlined data"] = flush_inlined_data(lake, dry_run)
    report.steps["merge small files"] = merge_small_files(lake, tables, m.max_compacted_files, dry_run)
    report.steps["expire snapshots"] = expire_old_snapshots(lake, cutoffs, dry_run)
    report.steps["clean up files"] = cleanup_files(lake, cutoffs, dry_run)
    if not dry_run:
        report.after, awaiting_after = measure_files(lake, tables)
        report.awaiting_deletion = (awaiting, awaiting_after)
    else:
        report.after = before
    report.seconds = time.perf_counter() - started
    return report


def publish_maintenance(report: MaintenanceReport) -> None:
    """Log the summary and attach it to the flow run as a table and a markdown artifact."""
    get_run_logger().info("Maintenance: %s", report.headline())
    create_table_artifact(table=report.rows(), key="bronze-maintenance-files", description=report.headline())
    create_markdown_artifact(
        markdown=report.markdown(), key="bronze-maintenance-summary", description=report.headline()
    )
