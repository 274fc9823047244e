"""FLUSH a group of tables in one shared lake commit: their rows at or below the watermark, one transaction, one
snapshot (flush.commit_groups).

The same exactly-once rules as flush_table, per table: each table's batch is recorded pending before the lake
transaction, each table's unconfirmed earlier commits are undone inside it, and each is recorded committed after
it. The commit's label names every table in it, so a later run (together or table by table) undoes each table's
part on its own. No retries here: if the shared commit fails, the flow flushes the tables one by one instead.
"""

from __future__ import annotations

import time

import duckdb
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flusher.catalog_link import CatalogLookupError
from flusher.certificate import CertificateMismatch
from flusher.config import CertificateMode, PostgresSettings
from flusher.failed_write import explain_disk_full
from flusher.hot import Mark
from flusher.lake import LakeSession, redact
from flusher.plan import TablePlan
from flusher.registry import TableSpec
from flusher.report import FlushOutcome
from flusher.state import StateStore
from flusher.tasks.flush import PermanentTableError, TableFlushError, check_hot_table, log_lake_changes
from flusher.transfer import LabelOwner, SchemaMismatch, TableCopy, copy_tables, plan_columns


def can_join(spec: TableSpec, table_plan: TablePlan, postgres: PostgresSettings) -> bool:
    """Whether the table can share a commit: one that flush_table would refuse at once (missing, no ledger
    column, a type the lake refuses) flushes on its own, so its error is reported as usual and the others go on."""
    try:
        hot = check_hot_table(postgres, spec, table_plan.hot_columns)
        plan_columns(spec.name, list(hot), list(table_plan.lake_columns))
    except (PermanentTableError, SchemaMismatch):
        return False
    return True


@task(name="flush-shared-commit", cache_policy=NO_CACHE, persist_result=False)
def flush_shared_commit(
    specs: list[TableSpec],
    mark: Mark,
    table_plans: dict[str, TablePlan],
    lake: LakeSession,
    state: StateStore,
    owner: LabelOwner,
    postgres: PostgresSettings,
    data_path: str,
    certify: CertificateMode = "lake",
) -> dict[str, FlushOutcome]:
    """Copy every table of `specs` in one labelled lake commit; per table its outcome.

    Raises TableFlushError if anything fails: the lake transaction rolled back (nothing of it committed, or, for a
    failure after the commit, it is undone by the next attempt of each table, as for flush_table).
    """
    logger = get_run_logger()
    started = time.perf_counter()
    copies = []
    for spec in specs:
        plan = table_plans[spec.name]
        first_attempt = state.record_pending(mark.batch_id, spec.name, mark.watermark)
        undo = state.open_batches(spec.name)
        if first_attempt:  # this batch has no lake commit yet: only earlier open batches may need undoing
            undo = [b for b in undo if b != mark.batch_id]
        copies.append(TableCopy(spec, plan.hot_columns or (), plan.lake_columns, tuple(undo)))
    try:
        results = copy_tables(lake, copies, mark, owner, certify)
    except (duckdb.Error, SchemaMismatch, CertificateMismatch, CatalogLookupError) as exc:
        message = explain_disk_full(redact(str(exc), postgres.password.get_secret_value()), data_path)
        raise TableFlushError(
            f"flushing {', '.join(s.name for s in specs)} in one lake commit (ledgers <= {mark.watermark}) failed: "
            f"{message}"
        ) from None
    seconds = time.perf_counter() - started
    outcomes = {}
    for copy in copies:
        name, result = copy.spec.name, results[copy.spec.name]
        table_seconds = seconds if result.seconds is None else result.seconds
        state.record_committed(
            mark.batch_id,
            name,
            result.snapshot_id,
            result.rows,
            table_seconds,
            list(copy.undo),
            None,
            result.certificate,
        )
        log_lake_changes(logger, name, result)
        outcomes[name] = FlushOutcome(
            name,
            result.rows,
            result.snapshot_id,
            table_seconds,
            len(result.undone_snapshots),
            result.added_columns,
            read_point=result.read_point,
        )
    rows = sum(o.rows for o in outcomes.values())
    snapshot = next((o.lake_snapshot_id for o in outcomes.values() if o.lake_snapshot_id is not None), None)
    logger.info(
        "Flushed %s rows from %s tables to DuckLake in one commit (snapshot %s) in %.2fs",
        rows,
        len(specs),
        snapshot,
        seconds,
    )
    return outcomes
