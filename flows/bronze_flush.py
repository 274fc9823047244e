"""The bronze-flush flow: MARK the watermark, FLUSH each table, DELETE what committed, VACUUM every Nth run.

The steps' helpers live by concern: flows/parallel.py (how work runs side by side), flows/bookkeeping.py (tables,
dry run, checkpoint, stuck rows, maintenance), flows/takeover.py; what the run decides once is its plan
(flusher/plan.py), and each task takes only the pieces it uses.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State
from prefect.utilities.annotations import quote
from psycopg_pool import ConnectionPool
from pydantic import Field

from flusher.adoption import TakeoverRequired, lake_head
from flusher.blocks.settings import resolve_settings
from flusher.config import FlushSettings, PostgresSettings, Settings
from flusher.deletion import delete_flushed
from flusher.downstream import DownstreamBlocked
from flusher.flows.bookkeeping import (
    advance_cold_checkpoint,
    dry_run_counts,
    maintain_after_flush,
    present_in_hot,
    read_ledger_columns,
    stuck_rows,
)
from flusher.flows.parallel import outcome, run_bounded, settings_without_heartbeats
from flusher.flows.publish import ProgressTracker, emit_run_skipped, publish_report
from flusher.flows.run_context import started_from_deployment
from flusher.flows.takeover import claim_lake, go_floor, takeover_dry_run, takeover_incomplete
from flusher.hot import Mark
from flusher.lake import LakeSession
from flusher.plan import RunPlan, commit_groups
from flusher.registry import TableSpec, is_default_selection, known_table_names, selected_tables
from flusher.report import FlushOutcomes, RunReport
from flusher.resources import RunResources
from flusher.secrets import install_log_masking, mask_state, masked_errors
from flusher.state import StateStore
from flusher.statuses import RunStatus
from flusher.tasks.flush import flush_table
from flusher.tasks.flush_shared import can_join, flush_shared_commit
from flusher.tasks.vacuum import vacuum_tables
from flusher.tasks.watermark import FlushLocked, mark_watermark
from flusher.transfer import LabelOwner

install_log_masking()  # every log line of a flow run is masked, whoever logs it
# The flow's `tables` parameter accepts only known names: its schema enumerates them, so the Prefect API refuses a
# deployment run with a typo before any flow run exists (deployments enforce their parameter schema).
KnownTable = Literal[known_table_names()]  # type: ignore[valid-type]
# Per table with rows to delete: spec, rows copied, already in lake, the lake snapshot holding them (its read point).
Flushed = dict[str, tuple[TableSpec, int, int, int | None]]


@flow(name="delete-flushed-rows", validate_parameters=False, persist_result=False)
def delete_flushed_rows(
    pool: ConnectionPool, state: StateStore, postgres: PostgresSettings, at_once: int, mark: Mark, flushed: Flushed
) -> dict[str, Any]:
    """Delete subflow: for each table whose flush committed, delete its rows on the flush's snapshot.

    `flushed`: per table its spec, rows copied, rows found already in the lake (a takeover) and the lake snapshot
    holding them (recorded with the confirmation: readers split hot and lake at it). Tables go largest
    first, `at_once` at a time (the plan's delete parallelism: one per pooled connection).
    """
    largest_first = sorted(flushed, key=lambda name: -(flushed[name][1] + flushed[name][2]))
    logger = get_run_logger()
    with concurrent.futures.ThreadPoolExecutor(at_once, thread_name_prefix="delete") as workers:
        futures = {  # each in a copy of this run's context, so its log lines belong to the subflow run
            name: workers.submit(
                contextvars.copy_context().run,
                delete_flushed,
                pool,
                state,
                postgres,
                flushed[name][0],
                mark,
                *flushed[name][1:3],
                logger,
                flushed[name][3],
            )
            for name in largest_first
        }
    return {name: outcome(future) for name, future in futures.items()}


def _delete_subflow(res: RunResources, plan: RunPlan, mark: Mark, committed: Flushed) -> dict[str, Any]:
    """Run the delete subflow without flow-run heartbeats of its own.

    It lives in this flow run's process, whose heartbeats already show it alive; its own would add nothing but a
    wait of up to a second when it ends (Prefect joins a heartbeat thread that sleeps in one-second steps).
    """
    with settings_without_heartbeats():
        return delete_flushed_rows(
            quote(res.pool), quote(res.state), quote(res.settings.postgres), plan.parallelism.delete, mark, committed
        )


@dataclass(frozen=True)
class _Flushing:
    """What every flush task of a run shares: the run's resources and plan, the lake, its owner, the mark."""

    res: RunResources
    plan: RunPlan
    lake: LakeSession
    owner: LabelOwner
    mark: Mark

    def inputs(self) -> dict[str, Any]:
        """The inputs every flush task takes, whether it copies one table or a group."""
        return {  # quoted: Prefect would otherwise walk these objects looking for futures in every task's inputs
            "mark": self.mark,
            "lake": quote(self.lake),
            "state": quote(self.res.state),
            "owner": self.owner,
            "postgres": quote(self.res.settings.postgres),
            "data_path": self.res.settings.ducklake.data_path,
            "certify": self.res.settings.flush.certificate,
        }


def _flush_all(run: _Flushing, specs: list[TableSpec], takeover: bool = False) -> FlushOutcomes:
    """Every table's flush: in flush.commit_groups shared lake commits when set (not for a takeover, which
    reconciles table by table); otherwise, and for what could not join or whose shared commit failed, one flush
    task per table."""
    progress = ProgressTracker(len(specs)).update
    outcomes: FlushOutcomes = {}
    if run.res.settings.flush.commit_groups and not takeover:
        outcomes = _flush_in_shared_commits(run, specs, progress)
    rest = [spec for spec in specs if spec.name not in outcomes]
    if rest:
        done_before = len(outcomes)
        outcomes |= _flush_each(run, rest, takeover, lambda done: progress(done_before + done))
    return {spec.name: outcomes[spec.name] for spec in specs}


def _flush_in_shared_commits(run: _Flushing, specs: list[TableSpec], progress: Callable[[int], None]) -> FlushOutcomes:
    """The tables that can join, split by size into flush.commit_groups groups, each in one lake commit, all groups
    at once. Only the tables of groups that committed are returned: the others are left to one task per table."""
    plan, settings = run.plan, run.res.settings
    joining = [s.name for s in specs if can_join(s, plan.table(s.name), settings.postgres)]
    sizes = {name: plan.table(name).hot_bytes for name in joining}
    groups = commit_groups(joining, sizes, settings.flush.commit_groups)
    by_name = {s.name: s for s in specs}
    shared = run.inputs()
    parameters = {
        i: {"specs": [by_name[n] for n in group], "table_plans": quote({n: plan.table(n) for n in group}), **shared}
        for i, group in enumerate(groups)
    }
    futures = run_bounded(flush_shared_commit, parameters, max(len(groups), 1))
    outcomes: FlushOutcomes = {}
    for i, group in enumerate(groups):
        result, error = outcome(futures[i])
        if result is None:
            get_run_logger().warning(
                "The shared lake commit of %s failed (%s); flushing them one by one instead", ", ".join(group), error
            )
            continue
        outcomes |= {name: (result[name], None) for name in group}
    progress(len(outcomes))
    return outcomes


def _flush_each(
    run: _Flushing, specs: list[TableSpec], takeover: bool, progress: Callable[[int], None]
) -> FlushOutcomes:
    """One flush task per table, largest first, as many at once as the plan's flush parallelism."""
    task = _with_retries(run.res.settings.flush)
    by_name = {spec.name: spec for spec in specs}
    shared = run.inputs() | {"pool": quote(run.res.pool), "takeover": takeover}
    futures = run_bounded(
        task,
        {
            name: {"spec": by_name[name], "table_plan": quote(run.plan.table(name)), **shared}
            for name in run.plan.order
            if name in by_name
        },
        run.plan.parallelism.flush,
        progress,
    )
    return {name: outcome(futures[name]) for name in by_name}


def _with_retries(flush: FlushSettings) -> Any:
    """flush_table with flush.retries and a doubling delay: 2s, 4s, 8s, ..."""
    backoff = [flush.retry_delay_seconds * 2**attempt for attempt in range(flush.retries)]
    return flush_table.with_options(retries=flush.retries, retry_delay_seconds=backoff or 0)


@flow(
    name="bronze-flush",
    validate_parameters=True,
    persist_result=False,
    description="Flush the PostgreSQL hot buffer into the DuckLake Bronze layer, exactly once.",
)
def bronze_flush(
    config_path: str | None = None,
    tables: list[KnownTable] | None = None,
    dry_run: bool = False,
    max_ledgers_per_run: Annotated[int, Field(ge=0)] | None = None,
    postgres_block: str | None = None,
    ducklake_block: str | None = None,
    takeover: bool = False,
) -> State:
    """One flush: mark the watermark, copy every table's rows at or below it into the lake, delete what committed.

    Args:
        config_path: The YAML config file. Empty: the worker's $FLUSHER_CONFIG. A deployment run may name only that
            file or one under $FLUSHER_CONFIG_DIR.
        tables: Flush only these known tables (empty: every configured table).
        dry_run: Count the rows each table would move; change nothing.
        max_ledgers_per_run: Move at most this many ledgers (catch-up in chunks; 0: no cap; empty: the config's).
        postgres_block: A prefect-sqlalchemy SqlAlchemyConnector block holding the hot buffer's credentials.
        ducklake_block: A DuckLake Bronze block holding the catalog, data path and S3 keys.
        takeover: The first flush over a lake the Go service filled: rows the lake already holds are deleted from
            PostgreSQL without being copied again; with dry_run, reports what it would do.
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
        return takeover_dry_run(settings, specs)
    floor = None
    if takeover:
        cap = 0  # one run must cover every ledger the Go service may have flushed: they cannot be told apart later
        floor = go_floor(settings)
    with RunResources.open(settings) as res:
        if not dry_run:
            res.start_attaching_lake()
        # The tables this deployment flushes (the query API's split waits for all of them); a run may name fewer.
        every = selected_tables(settings.flush)
        ledgers = read_ledger_columns(res, every)  # once: the dry run reuses them
        configured = present_in_hot(every, ledgers, is_default_selection(settings.flush))
        if not tables:
            specs = configured

        # MARK: the lock, the snapshot, the watermark.
        try:
            mark = mark_watermark(
                quote(res.control),
                quote(res.state),
                quote(settings.downstream),
                settings.flush.lock_wait_seconds,
                cap,
                flow_run.get_id(),
                floor,
            )
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
            stuck = stuck_rows(res, specs)
            return Completed(message="; ".join(["nothing to flush: the hot buffer is empty", *stuck.reasons()]))
        if dry_run:
            counts, refused = dry_run_counts(res, specs, mark, ledgers)
            rows = sum(counts.values())
            res.state.finish_run(mark.batch_id, RunStatus.DRY_RUN, mark.watermark, f"dry run: {rows} rows", False)
            return Completed(
                message="; ".join([f"dry run at watermark {mark.watermark}: {rows} rows would flush", *refused])
            )

        # FLUSH: a labelled lake commit per table, or per group of tables (flush.commit_groups), in the plan's order.
        lake, plan = res.open_lake(specs)
        try:
            owner = claim_lake(res.state, lake, takeover)
        except TakeoverRequired as exc:  # before any flush task: nothing was flushed or deleted
            get_run_logger().error("Refused: %s", exc)
            res.state.finish_run(mark.batch_id, RunStatus.FAILED, mark.watermark, f"refused: {exc}", False)
            return Failed(name="Refused", message=str(exc))
        flushes = _flush_all(_Flushing(res, plan, lake, owner, mark), specs, takeover)

        # DELETE: only tables whose flush committed rows; a table with none was confirmed at once.
        by_name = {s.name: s for s in specs}
        committed = {
            name: (by_name[name], result.rows, result.already_in_lake, result.read_point)
            for name, (result, _) in flushes.items()
            if result is not None and result.rows_expected > 0
        }
        deletes = _delete_subflow(res, plan, mark, committed) if committed else {}
        res.control.release()

        # Checkpoint: the query API's hot/cold split follows what every configured table has confirmed.
        checkpoint_error = advance_cold_checkpoint(res, [s.name for s in configured])
        report = RunReport.build(mark, specs, flushes, deletes)
        report.checkpoint_error = checkpoint_error
        # Adopted once every configured table is confirmed up to every ledger the Go service may have written (a
        # subset, or a watermark held below that by a downstream consumer, leaves rows unreconciled).
        incomplete = takeover_incomplete(mark, floor, tables, report) if takeover else None
        adopted = takeover and incomplete is None
        if adopted:
            res.state.mark_adopted("takeover", lake_head(lake))  # normal flushes may run from now on
            get_run_logger().info("Takeover complete at watermark %s: the lake is adopted", mark.watermark)
        report.stuck = stuck_rows(res, specs)

        # VACUUM every Nth completed flush (and maintenance, when enabled), only after a run with no failed table.
        vacuumed = False
        if (
            not report.failed_tables
            and settings.vacuum.enabled
            and res.state.vacuum_due(settings.vacuum.every_n_flushes)
        ):
            # quote(): the table names are the very strings the flush tasks and the delete subflow returned, so
            # Prefect would link them as inputs of type flow_run, which its UI cannot render (no task runs shown).
            report.vacuum_seconds = vacuum_tables(
                quote(res.pool), quote(settings.postgres), quote([s.name for s in specs]), plan.parallelism.delete
            )
            vacuumed = True
        status = RunStatus.FAILED if report.failed_tables or checkpoint_error else RunStatus.COMPLETED
        if not report.failed_tables:
            maintain_after_flush(res, lake, report)

        # Report.
        report.seconds = time.perf_counter() - started
        res.state.finish_run(mark.batch_id, status, mark.watermark, report.headline(), vacuumed)
        publish_report(report)
    if report.failed_tables or checkpoint_error:
        return Failed(message=report.headline())
    if takeover and not adopted:
        return Failed(message=f"{report.headline()}; takeover not complete ({incomplete}): run it again")
    return Completed(message=report.headline())
