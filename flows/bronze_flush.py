"""The bronze-flush flow: MARK the watermark, FLUSH each table, DELETE what committed, VACUUM every Nth run."""

from __future__ import annotations

import concurrent.futures
import contextvars
import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import psycopg
from prefect import Task, flow, get_run_logger
from prefect.context import SettingsContext, get_settings_context
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from flusher import cold_checkpoint
from flusher.adoption import TakeoverRequired, lake_head
from flusher.blocks.settings import resolve_settings
from flusher.config import Settings
from flusher.deletion import delete_flushed
from flusher.downstream import DownstreamBlocked
from flusher.flows.maintenance import run_maintenance
from flusher.flows.publish import ProgressTracker, emit_run_skipped, publish_maintenance, publish_report
from flusher.flows.run_context import started_from_deployment
from flusher.hot import Mark, connect, ledger_columns, ledger_type_refusal
from flusher.maintenance_report import MaintenanceRefused
from flusher.registry import TableSpec, is_default_selection, known_table_names, selected_tables, unselected_tables
from flusher.report import FlushOutcome, RunReport
from flusher.resources import RunResources
from flusher.secrets import install_log_masking, mask_state, masked_errors
from flusher.stuck import StuckRows, find_stuck_rows
from flusher.takeover import go_checkpoint, plan_takeover, render_plan, takeover_floor
from flusher.tasks.flush import flush_table
from flusher.tasks.vacuum import vacuum_tables
from flusher.tasks.watermark import FlushLocked, mark_watermark

install_log_masking()  # every log line of a flow run is masked, whoever logs it
Key = TypeVar("Key")
# The flow's `tables` parameter accepts only known names: its schema enumerates them, so the Prefect API refuses a
# deployment run with a typo before any flow run exists (deployments enforce their parameter schema).
KnownTable = Literal[known_table_names()]  # type: ignore[valid-type]


def run_bounded(
    task: Task[..., Any],
    parameters: dict[Key, dict[str, Any]],
    limit: int,
    progress: Callable[[int], None] = lambda done: None,
) -> dict[Key, PrefectFuture]:
    """Run `task` once per key, at most `limit` at a time, in the order given; return every key's finished future.

    Everything is submitted at once to a pool of `limit` threads, so a finished task's thread takes the next one
    without a round trip through this thread. `progress` hears 0 once all are submitted (it may make API calls
    while the tasks run), then the number finished as each one finishes.
    """
    with ThreadPoolTaskRunner(max_workers=limit) as runner:
        futures = {key: runner.submit(task, params) for key, params in parameters.items()}
        progress(0)
        # concurrent.futures, not prefect.futures.wait: with a timeout, Prefect's arms SIGALRM in the main thread,
        # and the alarm once fired inside a lock's release and failed the run.
        finished = concurrent.futures.as_completed(future.wrapped_future for future in futures.values())
        for done, _ in enumerate(finished, start=1):
            progress(done)
    return futures


def _outcome(future: PrefectFuture | concurrent.futures.Future) -> tuple[Any, str | None]:
    """A future's result once it has finished, or None and the error message."""
    try:
        return future.result(), None
    except BaseException as exc:  # noqa: BLE001 - any task failure is reported by table
        return None, str(exc) or type(exc).__name__


@flow(name="delete-flushed-rows", validate_parameters=False, persist_result=False)
def delete_flushed_rows(
    res: RunResources, mark: Mark, flushed: dict[str, tuple[TableSpec, int, int]]
) -> dict[str, Any]:
    """Delete subflow: for each table whose flush committed, delete its rows on the flush's snapshot.

    `flushed`: per table its spec, rows copied and rows found already in the lake (a takeover). Tables go largest
    first, as many at once as the pool has connections.
    """
    largest_first = sorted(flushed, key=lambda name: -(flushed[name][1] + flushed[name][2]))
    logger = get_run_logger()
    with concurrent.futures.ThreadPoolExecutor(res.settings.postgres.pool_size, thread_name_prefix="delete") as pool:
        futures = {  # each in a copy of this run's context, so its log lines belong to the subflow run
            name: pool.submit(
                contextvars.copy_context().run, delete_flushed, res, flushed[name][0], mark, *flushed[name][1:], logger
            )
            for name in largest_first
        }
    return {name: _outcome(future) for name, future in futures.items()}


def _delete_subflow(res: RunResources, mark: Mark, committed: dict[str, tuple[TableSpec, int, int]]) -> dict[str, Any]:
    """Run the delete subflow without flow-run heartbeats of its own.

    It lives in this flow run's process, whose heartbeats already show it alive; its own would add nothing but a
    wait of up to a second when it ends (Prefect joins a heartbeat thread that sleeps in one-second steps).
    """
    with _settings_without_heartbeats():
        return delete_flushed_rows(quote(res), mark, committed)


def _settings_without_heartbeats() -> SettingsContext:
    """The current Prefect settings with flow-run heartbeats off, as a context to enter.

    A plain copy: `temporary_settings` re-validates every setting from its sources, which took ~90 ms.
    """
    current = get_settings_context()
    flows = current.settings.flows.model_copy(update={"heartbeat_frequency": None})
    return SettingsContext(profile=current.profile, settings=current.settings.model_copy(update={"flows": flows}))


def _flush_all(
    res: RunResources, specs: list[TableSpec], mark: Mark, takeover: bool = False
) -> dict[str, tuple[FlushOutcome | None, str | None]]:
    flush = res.settings.flush
    backoff = [flush.retry_delay_seconds * 2**attempt for attempt in range(flush.retries)]  # 2s, 4s, 8s, ...
    task = flush_table.with_options(retries=flush.retries, retry_delay_seconds=backoff or 0)
    by_name = {spec.name: spec for spec in specs}
    futures = run_bounded(
        task,
        {
            name: {"res": quote(res), "spec": by_name[name], "mark": mark, "takeover": takeover}
            for name in res.largest_first(list(by_name))
        },
        flush.concurrency,
        ProgressTracker(len(specs)).update,
    )
    return {name: _outcome(futures[name]) for name in by_name}


def _advance_cold_checkpoint(res: RunResources, tables: list[str]) -> str | None:
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


def _takeover_incomplete(mark: Mark, floor: int | None, tables: list[str] | None, report: RunReport) -> str | None:
    """Why a takeover run may not adopt the lake yet, or None when every row the Go service left is reconciled."""
    if tables is not None:
        return "a table subset was taken over; run it for all tables"
    reach = max((v for v in (mark.hot_max, floor) if v is not None), default=mark.watermark)
    if mark.watermark < reach:  # rows above the watermark may already be in the lake; a plain flush would copy them
        return f"reconciled up to ledger {mark.watermark} of {reach}: a downstream consumer holds the rest in hot"
    if not all(line.status in ("flushed", "empty") for line in report.lines):
        return "a table failed or its delete was deferred"
    return None


def _present_in_hot(res: RunResources, specs: list[TableSpec], default: bool) -> list[TableSpec]:
    """The tables to flush: in the default selection, known tables missing from the hot buffer are skipped."""
    if not default:
        return specs  # a table someone named fails when missing, as it should
    with res.pool.connection() as conn:
        present = ledger_columns(conn, res.settings.postgres.schema_name, {s.name: s.ledger_column for s in specs})
    missing = [s.name for s in specs if s.name not in present]
    if missing:
        get_run_logger().info(
            "Not in the hot buffer, so not flushed: %s (name them in flush.tables to make a missing table an error)",
            ", ".join(missing),
        )
    return [s for s in specs if s.name in present]


def _stuck_rows(res: RunResources, specs: list[TableSpec]) -> StuckRows:
    """Rows that no run will move as things stand (NULL ledgers, waiting for ledgers, unflushed known tables)."""
    settings = res.settings
    unselected = unselected_tables(settings.flush)
    with res.pool.connection() as conn:
        stuck = find_stuck_rows(conn, settings.postgres.schema_name, specs, unselected, res.state.last_watermark())
    for reason in stuck.reasons():
        get_run_logger().warning("Stuck rows: %s", reason)
    return stuck


def _maintain_after_flush(res: RunResources, report: RunReport) -> bool:
    """maintenance.enabled: every Nth completed flush, maintain the lake now, under this run's flush lock.

    As in the Go service, a maintenance failure does not fail the flush; the count is not reset, so the next
    completed flush tries again.
    """
    settings = res.settings
    if not settings.maintenance.enabled or not res.state.maintenance_due(settings.maintenance.every_n_flushes):
        return False
    logger = get_run_logger()
    try:
        maintained = run_maintenance(res.lake, res.state, settings.maintenance, dry_run=False)
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


def _dry_run(res: RunResources, specs: list[TableSpec], mark: Mark) -> tuple[dict[str, int], list[str]]:
    """Rows each table would flush, and the refusals of tables a flush would refuse (a ledger column not an integer)."""
    schema = res.settings.postgres.schema_name
    with res.pool.connection() as conn:
        columns = ledger_columns(conn, schema, {s.name: s.ledger_column for s in specs})
    wrong = {s.name for s in specs if s.name in columns and columns[s.name].type and not columns[s.name].is_integer}
    refused = [
        ledger_type_refusal(schema, s.name, s.ledger_column, columns[s.name].type) for s in specs if s.name in wrong
    ]
    countable = [s for s in specs if s.name not in wrong]
    counts = {s.name: res.control.count_at_or_below(s.name, s.ledger_column, mark.watermark) for s in countable}
    get_run_logger().info(
        "Dry run at watermark %s would flush %s rows: %s", mark.watermark, sum(counts.values()), counts
    )
    for refusal in refused:
        get_run_logger().warning("Dry run: %s", refusal)
    return counts, refused


@flow(
    name="bronze-flush",
    task_runner=ThreadPoolTaskRunner(max_workers=32),
    validate_parameters=True,
    persist_result=False,
    description="Flush the PostgreSQL hot buffer into the DuckLake Bronze layer, exactly once.",
)
def bronze_flush(
    config_path: str | None = None,
    tables: list[KnownTable] | None = None,
    dry_run: bool = False,
    max_ledgers_per_run: int | None = None,
    postgres_block: str | None = None,
    ducklake_block: str | None = None,
    takeover: bool = False,
) -> State:
    """One flush. Parameters: a config file or block names; a table subset; a dry run; a ledger cap for catch-up.

    takeover: the first flush over a lake another flusher (the Go service) filled: rows at or below the watermark
    that the lake already holds are deleted from PostgreSQL without being copied again; when every table is
    confirmed, the state records that it adopted the lake. With dry_run, reports what it would do.
    """
    with masked_errors():  # the state message and the logs leave the process: no secret in them
        return mask_state(
            _bronze_flush(config_path, tables, dry_run, max_ledgers_per_run, postgres_block, ducklake_block, takeover)
        )


def _bronze_flush(
    config_path: str | None,
    tables: list[str] | None,
    dry_run: bool,
    max_ledgers_per_run: int | None,
    postgres_block: str | None,
    ducklake_block: str | None,
    takeover: bool,
) -> State:
    started = time.perf_counter()
    settings: Settings = resolve_settings(
        config_path, postgres_block, ducklake_block, restricted=started_from_deployment()
    )
    specs = selected_tables(settings.flush, tables)
    cap = settings.flush.max_ledgers_per_run if max_ledgers_per_run is None else max_ledgers_per_run
    if takeover and dry_run:
        plan = plan_takeover(settings, specs)
        get_run_logger().info("Takeover dry run:\n%s", render_plan(plan))
        return Completed(message=render_plan(plan).splitlines()[-1])
    floor = None
    if takeover:
        cap = 0  # one run must cover every ledger the Go service may have flushed: they cannot be told apart later
        with connect(settings.postgres) as conn:
            go = go_checkpoint(conn, settings.postgres.schema_name)
        floor = takeover_floor(go)
        get_run_logger().info("Takeover: Go flusher checkpoint %s", go.watermark if go else "not found")
    with RunResources.open(settings) as res:
        if not dry_run:
            res.start_attaching_lake()
        # The tables this deployment flushes (the query API's split waits for all of them); a run may name fewer.
        configured = _present_in_hot(res, selected_tables(settings.flush), is_default_selection(settings.flush))
        if not tables:
            specs = configured
        try:
            mark = mark_watermark(res, cap, flow_run.get_id(), floor)
        except FlushLocked as exc:  # the state's name says "Skipped"; the message says why
            get_run_logger().warning("Skipped: %s", exc)
            return Completed(name="Skipped", message=str(exc))
        except DownstreamBlocked as exc:
            get_run_logger().warning("Skipped: %s", exc)
            emit_run_skipped(str(exc), [c.describe() for c in settings.downstream])
            return Completed(name="Skipped", message=str(exc))
        if mark is None:
            if takeover and tables is None:
                res.state.mark_adopted("takeover")
                return Completed(message="takeover: the hot buffer is empty, nothing to reconcile; lake adopted")
            stuck = _stuck_rows(res, specs)
            return Completed(message="; ".join(["nothing to flush: the hot buffer is empty", *stuck.reasons()]))
        if dry_run:
            counts, refused = _dry_run(res, specs, mark)
            res.state.finish_run(
                mark.batch_id, "dry-run", mark.watermark, f"dry run: {sum(counts.values())} rows", False
            )
            return Completed(
                message="; ".join(
                    [f"dry run at watermark {mark.watermark}: {sum(counts.values())} rows would flush", *refused]
                )
            )
        res.open_lake([s.name for s in specs])
        if takeover:  # flushes refuse until the takeover has finished (adopted() is False meanwhile)
            res.state.begin_adoption("takeover")
        else:
            try:
                res.check_lake_ownership()
            except TakeoverRequired as exc:  # before any flush task: nothing was flushed or deleted
                get_run_logger().error("Refused: %s", exc)
                res.state.finish_run(mark.batch_id, "failed", mark.watermark, f"refused: {exc}", False)
                return Failed(name="Refused", message=str(exc))
        flushes = _flush_all(res, specs, mark, takeover)
        by_name = {s.name: s for s in specs}
        committed = {  # tables with rows to delete; a table with none was confirmed at once
            name: (by_name[name], outcome.rows, outcome.already_in_lake)
            for name, (outcome, _) in flushes.items()
            if outcome is not None and outcome.rows_expected > 0
        }
        deletes = _delete_subflow(res, mark, committed) if committed else {}
        res.control.release()
        checkpoint_error = _advance_cold_checkpoint(res, [s.name for s in configured])
        report = RunReport.build(mark, specs, flushes, deletes)
        report.checkpoint_error = checkpoint_error
        # Adopted once every configured table is confirmed up to every ledger the Go service may have written (a
        # subset, or a watermark held below that by a downstream consumer, leaves rows unreconciled).
        incomplete = _takeover_incomplete(mark, floor, tables, report) if takeover else None
        adopted = takeover and incomplete is None
        if adopted:
            res.state.mark_adopted("takeover", lake_head(res.lake))  # normal flushes may run from now on
            get_run_logger().info("Takeover complete at watermark %s: the lake is adopted", mark.watermark)
        report.stuck = _stuck_rows(res, specs)
        vacuumed = False
        if (
            not report.failed_tables
            and settings.vacuum.enabled
            and res.state.vacuum_due(settings.vacuum.every_n_flushes)
        ):
            report.vacuum_seconds = vacuum_tables(res, [s.name for s in specs])
            vacuumed = True
        status = "failed" if report.failed_tables or checkpoint_error else "completed"
        if not report.failed_tables:
            _maintain_after_flush(res, report)
        report.seconds = time.perf_counter() - started
        res.state.finish_run(mark.batch_id, status, mark.watermark, report.headline(), vacuumed)
        publish_report(report)
    if report.failed_tables or checkpoint_error:
        return Failed(message=report.headline())
    if takeover and not adopted:
        return Failed(message=f"{report.headline()}; takeover not complete ({incomplete}): run it again")
    return Completed(message=report.headline())
