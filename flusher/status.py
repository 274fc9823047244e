"""The `status` report: per table, rows still in the hot buffer, rows flushed, and the last batch; then stuck rows."""

from __future__ import annotations

from flusher.config import Settings
from flusher.hot import connect, hot_row_counts, make_pool
from flusher.registry import selected_tables, unselected_tables
from flusher.state import StateStore
from flusher.statuses import BatchStatus
from flusher.stuck import find_stuck_rows


def render_status(settings: Settings) -> str:
    specs = selected_tables(settings.flush)
    unselected = unselected_tables(settings.flush)
    names = [t.name for t in specs]
    schema = settings.postgres.schema_name
    with make_pool(settings.postgres) as pool:
        state = StateStore(pool, settings.flush.state_schema)
        state.ensure()
        summary = state.summary()
        identity = state.identity()
    with connect(settings.postgres) as conn:
        hot = hot_row_counts(conn, schema, names + [t.name for t in unselected])
        stuck = find_stuck_rows(conn, schema, specs, unselected, summary.last_watermark)
    lines = [
        f"flushes: {summary.flush_count} completed, {summary.failed_count} failed; "
        f"last: {summary.last_flush_time or 'never'}; watermark: {summary.last_watermark}; "
        f"rows flushed: {summary.total_flushed}, deleted: {summary.total_deleted}",
        f"{'table':34} {'in hot':>10} {'flushed':>12} {'last batch':>10}  status",
    ]
    for name in names:
        t = summary.tables.get(name, {})
        in_hot = "missing" if hot[name] is None else str(hot[name])
        status = t.get("last_status") or "-"
        if t.get("last_error") and status != BatchStatus.CONFIRMED:
            status += f" ({t['last_error'][:80]})"
        lines.append(
            f"{name:34} {in_hot:>10} {t.get('rows_flushed', 0):>12} {str(t.get('last_batch') or '-'):>10}  {status}"
        )
    for spec in unselected:  # an explicit flush.tables leaves these out: rows here are never flushed
        if hot[spec.name]:
            lines.append(f"{spec.name:34} {hot[spec.name]:>10} {'-':>12} {'-':>10}  NOT FLUSHED (not in flush.tables)")
    lines += [f"STUCK: {reason}" for reason in stuck.reasons()]
    lines.append(identity.describe())  # last, so the table keeps its place for whoever reads it
    return "\n".join(lines)
