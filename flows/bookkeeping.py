"""The flush run's steps around the data path: which tables, a dry run, the query API's checkpoint, stuck rows, and
maintenance after a flush. Each reads or writes state and logs; none copies or deletes rows."""

from __future__ import annotations

import psycopg
from prefect import get_run_logger

from flusher import cold_checkpoint
from flusher.flows.maintenance import run_maintenance
from flusher.flows.publish import publish_maintenance
from flusher.hot import LedgerColumn, Mark, ledger_columns, ledger_type_refusal
from flusher.lake import LakeSession
from flusher.maintenance_report import MaintenanceRefused
from flusher.registry import TableSpec, skip_missing, unselected_tables
from flusher.report import RunReport
from flusher.resources import RunResources
from flusher.stuck import StuckRows, find_stuck_rows


def read_ledger_columns(res: RunResources, specs: list[TableSpec]) -> dict[str, LedgerColumn]:
    """Each existing table's ledger column (name, type), read once for the run (one catalog query)."""
    with res.pool.connection() as conn:
        return ledger_columns(conn, res.settings.postgres.schema_name, {s.name: s.ledger_column for s in specs})


def present_in_hot(specs: list[TableSpec], ledgers: dict[str, LedgerColumn], default: bool) -> list[TableSpec]:
    """The tables to flush: in the default selection, known tables missing from the hot buffer are skipped."""
    kept, missing = skip_missing(specs, ledgers, default)
    if missing:
        get_run_logger().info(
            "Not in the hot buffer, so not flushed: %s (name them in flush.tables to make a missing table an error)",
            ", ".join(missing),
        )
    return kept


def dry_run_counts(
    res: RunResources, specs: list[TableSpec], mark: Mark, ledgers: dict[str, LedgerColumn]
) -> tuple[dict[str, int], list[str]]:
    """Rows each table would flush, and the refusals of tables a flush would refuse (a ledger column not an integer).

    `ledgers`: the ledger columns the run read (read_ledger_columns), not read again here.
    """
    schema = res.settings.postgres.schema_name
    wrong = {s.name for s in specs if s.name in ledgers and ledgers[s.name].type and not ledgers[s.name].is_integer}
    refused = [
        ledger_type_refusal(schema, s.name, s.ledger_column, ledgers[s.name].type) for s in specs if s.name in wrong
    ]
    countable = [s for s in specs if s.name not in wrong]
    counts = {s.name: res.control.count_at_or_below(s.name, s.ledger_column, mark.watermark) for s in countable}
    get_run_logger().info(
        "Dry run at watermark %s would flush %s rows: %s", mark.watermark, sum(counts.values()), counts
    )
    for refusal in refused:
        get_run_logger().warning("Dry run: %s", refusal)
    return counts, refused


def advance_cold_checkpoint(res: RunResources, tables: list[str]) -> str | None:
    """Raise cold_flusher_checkpoint (the query API's hot/cold split) to what every configured table has confirmed.

    Runs after the delete subflow, in its own short transaction; returns an error message if it could not.
    """
    logger = get_run_logger()
    try:
        with res.pool.connection() as conn:
            floor, value = cold_checkpoint.advance(
                conn, res.settings.postgres.schema_name, res.settings.flush.state_schema, tables
            )
    except psycopg.Error as exc:
        message = f"could not advance {cold_checkpoint.TABLE}: {str(exc).strip().splitlines()[0]}"
        logger.error("%s; the query API keeps reading the old hot/cold split", message)
        return message
    if floor is None or value != floor:
        logger.info("%s stays at %s (confirmed in every table up to %s)", cold_checkpoint.TABLE, value, floor)
    else:
        logger.info("%s advanced to %s", cold_checkpoint.TABLE, value)
    return None


def stuck_rows(res: RunResources, specs: list[TableSpec]) -> StuckRows:
    """Rows that no run will move as things stand (NULL ledgers, waiting for ledgers, unflushed known tables)."""
    settings = res.settings
    unselected = unselected_tables(settings.flush)
    with res.pool.connection() as conn:
        stuck = find_stuck_rows(conn, settings.postgres.schema_name, specs, unselected, res.state.last_watermark())
    for reason in stuck.reasons():
        get_run_logger().warning("Stuck rows: %s", reason)
    return stuck


def maintain_after_flush(res: RunResources, lake: LakeSession, report: RunReport) -> bool:
    """maintenance.enabled: every Nth completed flush, maintain the lake now, under this run's flush lock.

    As in the Go service, a maintenance failure does not fail the flush; the count is not reset, so the next
    completed flush tries again.
    """
    settings = res.settings
    if not settings.maintenance.enabled or not res.state.maintenance_due(settings.maintenance.every_n_flushes):
        return False
    logger = get_run_logger()
    try:
        maintained = run_maintenance(lake, res.state, settings.maintenance, dry_run=False)
    except MaintenanceRefused as exc:
        report.maintenance = f"skipped: {exc}"
    except Exception as exc:  # noqa: BLE001 - the flush itself succeeded; report and retry next time
        report.maintenance = f"failed (the next completed flush retries): {type(exc).__name__}: {exc}"
    else:
        res.state.mark_maintained(report.mark.batch_id)
        publish_maintenance(maintained)
        report.maintenance = maintained.headline()
        return True
    logger.warning("Maintenance after flush %s", report.maintenance)
    return False
