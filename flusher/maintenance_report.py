"""What a maintenance pass did, step by step (no Prefect here; flows/publish.py publishes it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flusher import maintenance as sql
from flusher.secrets import MaskedMessage


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


class MaintenanceRefused(MaskedMessage, RuntimeError):
    """Maintenance did not start: a lake commit still awaits its PostgreSQL delete."""
