"""What a run publishes to Prefect: a progress artifact, the report's artifacts and log lines, custom events."""

from __future__ import annotations

import time
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.events import emit_event

from flusher.hot import Mark
from flusher.maintenance_report import MaintenanceReport
from flusher.report import RunReport, TableLine
from flusher.secrets import mask, mask_any


class ProgressTracker:
    """A progress artifact in the UI: the share of tables whose flush has finished.

    Each update is an API round trip, so the artifact is created at the first update (once the tasks are submitted
    and running) and then updated at most every `min_interval` seconds (a short flush shows 0% then 100%; a long
    one moves as it goes).
    """

    def __init__(self, total: int, min_interval: float = 1.0) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.min_interval = min_interval
        self.updated_at = time.monotonic()
        self.artifact_id: UUID | None = None

    def update(self, done: int) -> None:
        now = time.monotonic()
        if self.artifact_id is None:
            self.artifact_id = create_progress_artifact(
                100.0 * done / self.total, key="bronze-flush-progress", description="tables flushed"
            )
        elif done != self.done and (done >= self.total or now - self.updated_at >= self.min_interval):
            update_progress_artifact(self.artifact_id, 100.0 * done / self.total)
        else:
            return
        self.done, self.updated_at = done, now


def publish_report(report: RunReport) -> None:
    """Log the summary and attach it to the flow run as artifacts."""
    logger = get_run_logger()
    logger.info(
        "Flush completed in %.2fs (watermark=%s, flushed=%s, deleted=%s)",
        report.seconds,
        report.mark.watermark,
        report.rows_flushed,
        report.rows_deleted,
    )
    for line in report.failed_tables:
        logger.error("Table %s failed and stays in PostgreSQL: %s", line.table, line.error)
        emit_table_failed(report.mark, line)
    headline = mask(report.headline())  # artifacts are stored in the API: no secret in them
    create_table_artifact(table=mask_any(report.rows()), key="bronze-flush-tables", description=headline)
    create_markdown_artifact(markdown=mask(report.markdown()), key="bronze-flush-summary", description=headline)


def emit_table_failed(mark: Mark, line: TableLine) -> None:
    """A custom Prefect event per failed table, for the `bronze-flush table failed` automation."""
    emit_event(
        event="flusher.table.failed",
        resource={
            "prefect.resource.id": f"postgres-ducklake-flusher.table.{line.table}",
            "prefect.resource.name": line.table,
        },
        payload=mask_any(
            {"table": line.table, "watermark": mark.watermark, "batch": mark.batch_id, "error": line.error}
        ),
    )


def emit_run_skipped(reason: str, consumers: list[str]) -> None:
    """A custom Prefect event when downstream retention skipped a run, for the `bronze-flush blocked` automation."""
    emit_event(
        event="flusher.run.skipped",
        resource={"prefect.resource.id": "postgres-ducklake-flusher.downstream", "prefect.resource.name": "downstream"},
        payload=mask_any({"reason": reason, "consumers": consumers}),
    )


def publish_maintenance(report: MaintenanceReport) -> None:
    """Log the summary and attach it to the flow run as a table and a markdown artifact."""
    get_run_logger().info("Maintenance: %s", report.headline())
    create_table_artifact(table=report.rows(), key="bronze-maintenance-files", description=report.headline())
    create_markdown_artifact(
        markdown=report.markdown(), key="bronze-maintenance-summary", description=report.headline()
    )
