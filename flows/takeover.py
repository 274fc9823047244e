"""The takeover parts of a flush run (the first flush over a lake the Go service filled): plan, floor, adoption."""

from __future__ import annotations

from prefect import get_run_logger
from prefect.states import Completed, State

from flusher.adoption import check_lake, label_owner
from flusher.config import Settings
from flusher.hot import Mark, connect
from flusher.lake import LakeSession
from flusher.registry import TableSpec
from flusher.report import RunReport
from flusher.state import StateStore
from flusher.takeover import go_checkpoint, plan_takeover, render_plan, takeover_floor
from flusher.transfer import LabelOwner


def takeover_dry_run(settings: Settings, specs: list[TableSpec]) -> State:
    """What a takeover would do, table by table, in the log; nothing is written."""
    plan = plan_takeover(settings, specs)
    get_run_logger().info("Takeover dry run:\n%s", render_plan(plan))
    return Completed(message=render_plan(plan).splitlines()[-1])


def go_floor(settings: Settings) -> int | None:
    """The lowest watermark the takeover may use: the Go flusher's checkpoint, if it left one."""
    with connect(settings.postgres) as conn:
        go = go_checkpoint(conn, settings.postgres.schema_name)
    get_run_logger().info("Takeover: Go flusher checkpoint %s", go.watermark if go else "not found")
    return takeover_floor(go)


def claim_lake(state: StateStore, lake: LakeSession, takeover: bool) -> LabelOwner:
    """Whose lake commits this run labels and may undo, read once before any flush task.

    A takeover starts the adoption (flushes refuse until it has finished: adopted() is False meanwhile); a normal
    run raises TakeoverRequired unless this state provably owns our commits in the lake (an empty lake is adopted).
    """
    if takeover:
        state.begin_adoption("takeover")
        return label_owner(state.identity())
    return label_owner(check_lake(state, lake))


def takeover_incomplete(mark: Mark, floor: int | None, tables: list[str] | None, report: RunReport) -> str | None:
    """Why a takeover run may not adopt the lake yet, or None when every row the Go service left is reconciled."""
    if tables is not None:
        return "a table subset was taken over; run it for all tables"
    reach = max((v for v in (mark.hot_max, floor) if v is not None), default=mark.watermark)
    if mark.watermark < reach:  # rows above the watermark may already be in the lake; a plain flush would copy them
        return f"reconciled up to ledger {mark.watermark} of {reach}: a downstream consumer holds the rest in hot"
    if not all(line.status.ok for line in report.lines):
        return "a table failed or its delete was deferred"
    return None
