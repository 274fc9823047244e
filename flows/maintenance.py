"""The bronze-maintenance flow: under the flusher lock, compact the lake and expire history past the retention."""

from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.states import Completed, Failed, State

from flusher.hot import lock_key
from flusher.lake import LakeSession
from flusher.maintenance import Cutoffs, lake_tables
from flusher.resources import RunResources
from flusher.settings_source import resolve_settings
from tasks.maintenance import (
    MaintenanceReport,
    cleanup_files,
    expire_old_snapshots,
    find_unconfirmed,
    flush_inlined_data,
    measure_files,
    merge_small_files,
    publish_maintenance,
)


@flow(
    name="bronze-maintenance",
    validate_parameters=True,
    persist_result=False,
    description="Flush inlined data, merge small files, expire old snapshots and delete the files they free.",
)
def bronze_maintenance(
    config_path: str | None = None,
    dry_run: bool = False,
    postgres_block: str | None = None,
    ducklake_block: str | None = None,
) -> State:
    """One maintenance pass; never alongside a flush, never while a lake commit awaits its delete."""
    started = time.perf_counter()
    settings = resolve_settings(config_path, postgres_block, ducklake_block)
    m = settings.maintenance
    logger = get_run_logger()
    with RunResources.open(settings) as res:
        key = lock_key(settings.flush.state_schema)
        # The flush's lock: a merge or expiry racing a flush's commit on the same table conflicts or loses files.
        if not res.control.try_lock(key, settings.flush.lock_wait_seconds):
            holder = res.control.lock_holder(key)
            message = f"skipped: a flush is running (PostgreSQL backend pid {holder} holds the flusher lock)"
            logger.warning(message)
            return Completed(name="Skipped", message=message)
        with LakeSession(settings, attach_hot=False) as lake:
            tables = lake_tables(lake)
            blockers = find_unconfirmed(lake, res.state, tables)
            if blockers:
                # The next flush undoes these commits by snapshot id; merging or expiring them first could lose that.
                detail = "; ".join(f"{t} (lake snapshots {s})" for t, s in sorted(blockers.items()))
                message = (f"refused: {len(blockers)} table(s) have lake commits whose PostgreSQL delete was never "
                           f"confirmed: {detail}. Run a flush (it undoes and re-copies them), then maintenance again.")
                logger.error(message)
                return Failed(message=message)
            cutoffs = Cutoffs.from_settings(m.snapshot_retention_days, m.file_cleanup_age_hours, m.orphan_file_age_hours)
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
    publish_maintenance(report)
    return Completed(message=report.headline())
