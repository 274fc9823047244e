"""The bronze-flush flow: MARK the watermark, FLUSH each table, DELETE what committed, VACUUM every Nth run."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterable
from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.settings import temporary_settings
from prefect.states import Completed, Failed, State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from flusher.config import Settings
from flusher.hot import Mark
from flusher.registry import TableSpec, selected_tables
from flusher.resources import RunResources
from flusher.settings_source import resolve_settings
from tasks.delete import DeleteOutcome, delete_flushed
from tasks.flush import FlushOutcome, flush_table
from tasks.report import ProgressTracker, RunReport, publish_report
from tasks.vacuum import vacuum_tables
from tasks.watermark import FlushLocked, mark_watermark


def run_bounded(
    submit: Callable[[Any], PrefectFuture],
    items: Iterable[Any],
    limit: int,
    progress: Callable[[int], None] = lambda done: None,
) -> dict[Any, PrefectFuture]:
    """Submit one task per item with at most `limit` running at once; return every item's finished future."""
    pending: set[concurrent.futures.Future] = set()
    futures: dict[Any, PrefectFuture] = {}
    for item in items:
        while len(pending) >= limit:
            # concurrent.futures.wait, not prefect.futures.wait: with a timeout, Prefect's arms SIGALRM in the main
            # thread, and the alarm once fired inside a lock's release and failed the run.
            _, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
            progress(len(futures) - len(pending))
        futures[item] = submit(item)
        pending.add(futures[item].wrapped_future)
    concurrent.futures.wait(pending)
    progress(len(futures))
    return futures


def _outcome(future: PrefectFuture) -> tuple[Any, str | None]:
    """A future's result once it has finished, or None and the error message."""
    try:
        return future.result(), None
    except BaseException as exc:  # noqa: BLE001 - any task failure is reported by table
        return None, str(exc) or type(exc).__name__


@flow(name="delete-flushed-rows", validate_parameters=False, persist_result=False)
def delete_flushed_rows(res: RunResources, mark: Mark, flushed: dict[str, tuple[TableSpec, int]]) -> dict[str, Any]:
    """Delete subflow: for each table whose flush committed, delete its rows on the flush's snapshot."""
    futures = run_bounded(
        lambda name: delete_flushed.submit(quote(res), flushed[name][0], mark, flushed[name][1]),
        sorted(flushed),
        res.settings.postgres.pool_size,
    )
    return {name: _outcome(future) for name, future in futures.items()}


def _delete_subflow(res: RunResources, mark: Mark, committed: dict[str, tuple[TableSpec, int]]) -> dict[str, Any]:
    """Run the delete subflow without flow-run heartbeats of its own.

    It lives in this flow run's process, whose heartbeats already show it alive; its own would add nothing but a
    wait of up to a second when it ends (Prefect joins a heartbeat thread that sleeps in one-second steps).
    """
    with temporary_settings(updates={"flows.heartbeat_frequency": None}):
        return delete_flushed_rows(quote(res), mark, committed)


def _flush_all(res: RunResources, specs: list[TableSpec], mark: Mark) -> dict[str, tuple[FlushOutcome | None, str | None]]:
    flush = res.settings.flush
    backoff = [flush.retry_delay_seconds * 2**attempt for attempt in range(flush.retries)]  # 2s, 4s, 8s, ...
    task = flush_table.with_options(retries=flush.retries, retry_delay_seconds=backoff or 0)
    tracker = ProgressTracker(len(specs))
    futures = run_bounded(lambda spec: task.submit(quote(res), spec, mark), specs, flush.concurrency, tracker.update)
    return {spec.name: _outcome(future) for spec, future in futures.items()}


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
) -> State:
    """One flush. Parameters: a config file or block names; a table subset; a dry run; a ledger cap for catch-up."""
    started = time.perf_counter()
    settings: Settings = resolve_settings(config_path, postgres_block, ducklake_block)
    specs = selected_tables(settings.flush, tables)
    cap = settings.flush.max_ledgers_per_run if max_ledgers_per_run is None else max_ledgers_per_run
    with RunResources.open(settings) as res:
        try:
            mark = mark_watermark(res, cap, flow_run.get_id())
        except FlushLocked as exc:
            get_run_logger().warning("Skipped: %s", exc)
            return Completed(name="Skipped", message=f"skipped: {exc}")
        if mark is None:
            return Completed(message="nothing to flush: the hot buffer is empty")
        if dry_run:
            counts = _dry_run(res, specs, mark)
            res.state.finish_run(mark.batch_id, "dry-run", mark.watermark, f"dry run: {sum(counts.values())} rows", False)
            return Completed(message=f"dry run at watermark {mark.watermark}: {sum(counts.values())} rows would flush")
        res.open_lake([s.name for s in specs])
        flushes = _flush_all(res, specs, mark)
        by_name = {s.name: s for s in specs}
        committed = {  # tables with rows in a lake commit; a table with none was confirmed at once
            name: (by_name[name], outcome.rows)
            for name, (outcome, _) in flushes.items()
            if outcome is not None and outcome.rows > 0
        }
        deletes = _delete_subflow(res, mark, committed) if committed else {}
        res.control.release()
        report = RunReport.build(mark, specs, flushes, deletes)
        vacuumed = False
        if not report.failed_tables and settings.vacuum.enabled and res.state.vacuum_due(settings.vacuum.every_n_flushes):
            report.vacuum_seconds = vacuum_tables(res, [s.name for s in specs])
            vacuumed = True
        report.seconds = time.perf_counter() - started
        status = "failed" if report.failed_tables else "completed"
        res.state.finish_run(mark.batch_id, status, mark.watermark, report.headline(), vacuumed)
        publish_report(report)
    if report.failed_tables:
        return Failed(message=report.headline())
    return Completed(message=report.headline())
