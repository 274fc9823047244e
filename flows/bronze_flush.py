"""The bronze-flush flow: MARK the watermark, FLUSH each table, DELETE what committed, VACUUM every Nth run."""

from __future__ import annotations

import concurrent.futures
import contextvars
import time
from collections.abc import Callable
from typing import Any, TypeVar

from prefect import Task, flow, get_run_logger
from prefect.context import SettingsContext, get_settings_context
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

import psycopg

from flusher import cold_checkpoint
from flusher.adoption import TakeoverRequired, lake_head
from flusher.config import Settings
from flusher.downstream import DownstreamBlocked
from flusher.hot import Mark, connect
from flusher.registry import TableSpec, selected_tables
from flusher.resources import RunResources
from flusher.settings_source import resolve_settings
from flusher.takeover import go_checkpoint, plan_takeover, render_plan, takeover_floor
from tasks.delete import DeleteOutcome, delete_flushed
from tasks.flush import FlushOutcome, flush_table
from tasks.report import ProgressTracker, RunReport, emit_run_skipped, publish_report
from tasks.vacuum import vacuum_tables
from tasks.watermark import FlushLocked, mark_watermark

Key = TypeVar("Key")


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
    with concurrent.futures.ThreadPoolExecutor(res.settings.postgres.pool_size, thread_name_prefix="delete") as pool:
        futures = {  # each in a copy of this run's context, so its log lines belong to the subflow run
            name: pool.submit(
                contextvars.copy_context().run, delete_flushed, res, flushed[name][0], mark, *flushed[name][1:]
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


def _advance_cold_checkpoint(res: RunResources) -> str | None:
    """Raise cold_flusher_checkpoint (the query API's hot/cold split) to what every configured table has confirmed.

    Runs after the delete subflow, in its own short transaction; returns an error message if it could not.
    """
    logger = get_run_logger()
    tables = [t.name for t in selected_tables(res.settings.flush)]
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


def _dry_run(res: RunResources, specs: list[TableSpec], mark: Mark) -> dict[str, int]:
    counts = {s.name: res.control.count_at_or_below(s.name, s.ledger_column, mark.watermark) for s in specs}
    get_run_logger().info("Dry run at watermark %s would flush %s rows: %s", mark.watermark, sum(counts.values()), counts)
    return counts


@flow(
    name="bronze-flush",
    task_runner=ThreadPoolTaskRunner(max_workers=32),
    validate_parameters=True,
    persist_result=False,
    description="Flush the PostgreSQL hot buffer into the DuckLake Bronze layer, exactly once.",
)
def bronze_flush(
    config_path: str | None = None,
    tables: list[str] | None = None,
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
    started = time.perf_counter()
    settings: Settings = resolve_settings(config_path, postgres_block, ducklake_block)
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
        try:
            mark = mark_watermark(res, cap, flow_run.get_id(), floor)
        except FlushLocked as exc:
            get_run_logger().warning("Skipped: %s", exc)
            return Completed(name="Skipped", message=f"skipped: {exc}")
        except DownstreamBlocked as exc:
            get_run_logger().warning("Skipped: %s", exc)
            emit_run_skipped(str(exc), [c.describe() for c in settings.downstream])
            return Completed(name="Skipped", message=f"skipped: {exc}")
        if mark is None:
            if takeover and tables is None:
                res.state.mark_adopted("takeover")
                return Completed(message="takeover: the hot buffer is empty, nothing to reconcile; lake adopted")
            return Completed(message="nothing to flush: the hot buffer is empty")
        if dry_run:
            counts = _dry_run(res, specs, mark)
            res.state.finish_run(mark.batch_id, "dry-run", mark.watermark, f"dry run: {sum(counts.values())} rows", False)
            return Completed(message=f"dry run at watermark {mark.watermark}: {sum(counts.values())} rows would flush")
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
        checkpoint_error = _advance_cold_checkpoint(res)
        report = RunReport.build(mark, specs, flushes, deletes)
        report.checkpoint_error = checkpoint_error
        # Adopted once every configured table is confirmed up to every ledger the Go service may have written (a
        # subset, or a watermark held below that by a downstream consumer, leaves rows unreconciled).
        incomplete = _takeover_incomplete(mark, floor, tables, report) if takeover else None
        adopted = takeover and incomplete is None
        if adopted:
            res.state.mark_adopted("takeover", lake_head(res.lake))  # normal flushes may run from now on
            get_run_logger().info("Takeover complete at watermark %s: the lake is adopted", mark.watermark)
        vacuumed = False
        if not report.failed_tables and settings.vacuum.enabled and res.state.vacuum_due(settings.vacuum.every_n_flushes):
            report.vacuum_seconds = vacuum_tables(res, [s.name for s in specs])
            vacuumed = True
        report.seconds = time.perf_counter() - started
        status = "failed" if report.failed_tables or checkpoint_error else "completed"
        res.state.finish_run(mark.batch_id, status, mark.watermark, report.headline(), vacuumed)
        publish_report(report)
    if report.failed_tables or checkpoint_error:
        return Failed(message=report.headline())
    if takeover and not adopted:
        return Failed(message=f"{report.headline()}; takeover not complete ({incomplete}): run it again")
    return Completed(message=report.headline())
