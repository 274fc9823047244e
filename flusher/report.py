"""What a run did: each table's flush and delete outcome, and the run report built from them (no Prefect here).

flows/publish.py turns a report into log lines, artifacts and events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flusher.hot import Mark
from flusher.registry import TableSpec
from flusher.statuses import LineStatus
from flusher.stuck import StuckRows


@dataclass(frozen=True)
class FlushOutcome:
    table: str
    rows: int
    lake_snapshot_id: int | None
    seconds: float
    undone_batches: int
    added_columns: list[str]
    already_in_lake: int = 0  # takeover: rows found in the lake already; deleted from PostgreSQL, not copied
    read_point: int | None = None  # the lake snapshot holding this batch's rows (recorded when the delete confirms)

    @property
    def rows_expected(self) -> int:
        """Rows the delete must remove."""
        return self.rows + self.already_in_lake


# Per table: its flush outcome, or None and the error.
FlushOutcomes = dict[str, tuple[FlushOutcome | None, str | None]]


@dataclass(frozen=True)
class DeleteOutcome:
    table: str
    rows: int
    seconds: float
    deferred: str | None = None  # why the delete was left to the next run


@dataclass
class TableLine:
    table: str
    status: LineStatus
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
        flushes: FlushOutcomes,
        deletes: dict[str, tuple[DeleteOutcome | None, str | None]],
    ) -> RunReport:
        lines = []
        for spec in specs:
            outcome, error = flushes[spec.name]
            if outcome is None:
                lines.append(TableLine(spec.name, LineStatus.FAILED, error=error))
                continue
            moved = outcome.rows or outcome.already_in_lake  # a takeover may only delete rows the lake holds
            line = TableLine(
                spec.name,
                LineStatus.FLUSHED if moved else LineStatus.EMPTY,
                outcome.rows,
                flush_seconds=outcome.seconds,
                lake_snapshot_id=outcome.lake_snapshot_id,
            )
            deleted, delete_error = deletes.get(spec.name, (None, None))
            if delete_error:
                line.status, line.error = LineStatus.FAILED, f"delete failed: {delete_error}"
            elif deleted is not None and deleted.deferred:
                line.status, line.error = LineStatus.DEFERRED, f"delete left for the next run: {deleted.deferred}"
            elif deleted is not None:
                line.rows_deleted, line.delete_seconds = deleted.rows, deleted.seconds
            lines.append(line)
        return cls(mark, lines)

    @property
    def failed_tables(self) -> list[TableLine]:
        return [line for line in self.lines if line.status is LineStatus.FAILED]

    @property
    def rows_flushed(self) -> int:
        return sum(line.rows_flushed for line in self.lines if line.status is LineStatus.FLUSHED)

    @property
    def rows_deleted(self) -> int:
        return sum(line.rows_deleted for line in self.lines)

    def headline(self) -> str:
        """One line; failures come first, so a UI that shows only the start of a state message shows them."""
        counts = (
            f"watermark {self.mark.watermark}: flushed {self.rows_flushed} rows, deleted {self.rows_deleted}, "
            f"{len(self.lines) - len(self.failed_tables)}/{len(self.lines)} tables ok"
        )
        failures = [f"{line.table}: {line.error}" for line in self.failed_tables]
        if self.checkpoint_error:
            failures.append(self.checkpoint_error)
        text = f"FAILED: {'; '.join(failures)} | {counts}" if failures else counts
        if self.stuck:
            text += "; STUCK ROWS: " + "; ".join(self.stuck.reasons())
        return text

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "table": line.table,
                "status": line.status.value,
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
