"""The run summary: what each table did, as a log line, a table artifact and a markdown artifact in the UI."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
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
from flusher.registry import TableSpec
from flusher.secrets import mask, mask_any
from flusher.stuck import StuckRows
from flusher.tasks.delete import DeleteOutcome
from flusher.tasks.flush import FlushOutcome


@dataclass
class TableLine:
    table: str
    status: str  # flushed | empty | failed | deferred
    rows_flushed: int = 0
    rows_deleted: int = 0
    flush_seconds: float = 0.0
    delete_seconds: float = 0.0
    lake_snapshot_id: int | None = None
    error: str | None = None


@dataclass
class RunReport:
    mark: Mark
    lines: list[TableLine]
    vacuum_seconds: float | None = None
    seconds: float = 0.0
    checkpoint_error: str | None = None  # cold_flusher_checkpoint could not be advanced
    stuck: StuckRows = field(default_factory=StuckRows)  # rows no run will move as things stand
    maintenance: str | None = None  # maintenance.enabled: what the in-flush maintenance did, when it was due

    @classmethod
    def build(
        cls,
        mark: Mark,
        specs: list[TableSpec],
        flushes: dict[str, tuple[FlushOutcome | None, str | None]],
        deletes: dict[str, tuple[DeleteOutcome | None, str | None]],
    ) -> RunReport:
        lines = []
        for spec in specs:
            outcome, error = flushes[spec.name]
            if outcome is None:
                lines.append(TableLine(spec.name, "failed", error=error))
                continue
            moved = outcome.rows or outcome.already_in_lake  # a takeover may only delete rows the lake holds
            line = TableLine(
                spec.name,
                "flushed" if moved else "empty",
                outcome.rows,
                flush_seconds=outcome.seconds,
                lake_snapshot_id=outcome.lake_snapshot_id,
            )
            deleted, delete_error = deletes.get(spec.name, (None, None))
            if delete_error:
                line.status, line.error = "failed", f"delete failed: {delete_error}"
            elif deleted is not None and deleted.deferred:
                line.status, line.error = "deferred", f"delete left for the next run: {deleted.deferred}"
            elif deleted is not None:
                line.rows_deleted, line.delete_seconds = deleted.rows, deleted.seconds
            lines.append(line)
        return cls(mark, lines)

    @property
    def failed_tables(self) -> list[TableLine]:
        return [line for line in self.lines if line.status == "failed"]

    @property
    def rows_flushed(self) -> int:
        return sum(line.rows_flushed for line in self.lines if line.status == "flushed")

    @property
    def rows_deleted(self) -> int:
        return sum(line.rows_deleted for line in self.lines)

    def headline(self) -> str:
        text = (
            f"watermark {self.mark.watermark}: flushed {self.rows_flushed} rows, deleted {self.rows_deleted}, "
            f"{len(self.lines) - len(self.failed_tables)}/{len(self.lines)} tables ok"
        )
        if self.failed_tables:
            text += "; FAILED: " + "; ".join(f"{line.table}: {line.error}" for line in self.failed_tables)
        if self.checkpoint_error:
            text += f"; FAILED: {self.checkpoint_error}"
        if self.stuck:
            text += "; STUCK ROWS: " + "; ".join(self.stuck.reasons())
        return text

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "table": line.table,
                "status": line.status,
                "rows_flushed": line.rows_flushed,
                "rows_deleted": line.rows_deleted,
                "flush_seconds": round(line.flush_seconds, 3),
                "delete_seconds": round(line.delete_seconds, 3),
                "lake_snapshot_id": line.lake_snapshot_id,
                "error": line.error or "",
                "stuck_rows": self._stuck_note(line.table),
            }
            for line in self.lines
        ]

    def _stuck_note(self, table: str) -> str:
        kinds = {"NULL ledger": self.stuck.null_ledger, "waiting for ledgers": self.stuck.waiting_for_ledgers}
        return ", ".join(f"{rows[table]} {kind}" for kind, rows in kinds.items() if table in rows)

    def markdown(self) -> str:
        vacuum = "not due" if self.vacuum_seconds is None else f"ran in {self.vacuum_seconds:.2f}s"
        lines = [
            f"# Bronze flush, batch {self.mark.batch_id}",
            f"- watermark: **{self.mark.watermark}** (hot ledgers {self.mark.hot_min}..{self.mark.hot_max}, "
            f"previous {self.mark.previous_watermark})",
            f"- rows flushed: **{self.rows_flushed}**, rows deleted: **{self.rows_deleted}**",
            f"- tables: {len(self.lines) - len(self.failed_tables)} ok, {len(self.failed_tables)} failed",
            f"- VACUUM ANALYZE: {vacuum}",
            f"- duration: {self.seconds:.2f}s",
        ]
        if self.maintenance is not None:
            lines.append(f"- maintenance (every maintenance.every_n_flushes): {self.maintenance}")
        lines += [f"- **{line.table} failed**: {line.error}" for line in self.failed_tables]
        lines += [f"- **stuck rows**: {reason}" for reason in self.stuck.reasons()]
        return "\n".join(lines)


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
