"""The bronze-maintenance flow: under the flusher lock, compact the lake and expire history past the retention."""

from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State

from flusher import failpoints
from flusher import maintenance as sql
from flusher.blocks.settings import resolve_settings
from flusher.config import MaintenanceSettings
from flusher.flows.publish import publish_maintenance
from flusher.flows.run_context import started_from_deployment
from flusher.hot import lock_key
from flusher.lake import LakeSession
from flusher.maintenance_report import MaintenanceRefused, MaintenanceReport
from flusher.resources import RunResources
from flusher.secrets import install_log_masking, mask_state, masked_errors
from flusher.state import StateStore
from flusher.tasks.maintenance import (
    cleanup_files,
    expire_old_snapshots,
    find_unconfirmed,
    flush_inlined_data,
    measure_files,
    merge_small_files,
)

install_log_masking()  # every log line of a flow run is masked, whoever logs it


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
    """One maintenance pass; never alongside a flush, never while a lake commit awaits its delete.

    Args:
        config_path: The YAML config file. Empty: the worker's $FLUSHER_CONFIG. A deployment run may name only that
            file or one under $FLUSHER_CONFIG_DIR.
        dry_run: Report what would be merged, expired and deleted; change nothing.
        postgres_block: A prefect-sqlalchemy SqlAlchemyConnector block holding the hot buffer's credentials.
        ducklake_block: A DuckLake Bronze block holding the catalog, data path and S3 keys.
    """
    with masked_errors():  # the state message and the logs leave the process: no secret in them
        return mask_state(_bronze_maintenance(config_path, dry_run, postgres_block, ducklake_block))


def _bronze_maintenance(
    config_path: str | None, dry_run: bool, postgres_block: str | None, ducklake_block: str | None
) -> State:
    settings = resolve_settings(config_path, postgres_block, ducklake_block, restricted=started_from_deployment())
    logger = get_run_logger()
    with RunResources.open(settings) as res:
        key = lock_key(settings.flush.state_schema)
        # The flush's lock: a merge or expiry racing a flush's commit on the same table conflicts or loses files.
        if not res.control.try_lock(key, settings.flush.lock_wait_seconds):
            message = res.control.lock_holder(key).describe()
            logger.warning("Skipped: %s", message)
            return Completed(name="Skipped", message=message)  # the state's name says "Skipped"
        res.control.announce("maintenance", flow_run.get_id())
        failpoints.hit("maintenance_locked")
        with LakeSession(settings, attach_hot=False) as lake:
            try:
                report = run_maintenance(lake, res.state, settings.maintenance, dry_run)
            except MaintenanceRefused as exc:
                logger.error(str(exc))
                return Failed(message=str(exc))
    publish_maintenance(report)
    return Completed(message=report.headline())


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
