"""FLUSH: copy one table's rows at or below the watermark into the lake, exactly once."""

from __future__ import annotations

import time
from typing import Any

import duckdb
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import State
from psycopg_pool import ConnectionPool

from flusher.catalog_link import CatalogLookupError
from flusher.certificate import CertificateMismatch
from flusher.config import CertificateMode, PostgresSettings
from flusher.diagnose import invalid_utf8, is_invalid_unicode
from flusher.failed_write import cleanup_message, explain_disk_full
from flusher.hot import DUCKDB_INTEGER_TYPES, Mark, ledger_type_refusal
from flusher.lake import Column, LakeSession, redact
from flusher.plan import TablePlan
from flusher.reconcile import reconcile_for
from flusher.registry import TableSpec
from flusher.report import FlushOutcome
from flusher.secrets import MaskedMessage
from flusher.state import StateStore
from flusher.transfer import CopyResult, LabelOwner, SchemaMismatch, copy_table


class TableFlushError(MaskedMessage, RuntimeError):
    """One table could not be flushed; its rows stay in PostgreSQL."""


class PermanentTableError(TableFlushError):
    """A table error that retrying cannot fix (missing table or column, a non-integer ledger column, a type the lake
    refuses): the task fails at its first attempt instead of waiting out its retries."""


def check_hot_table(pg: PostgresSettings, spec: TableSpec, columns: tuple[Column, ...] | None) -> tuple[Column, ...]:
    """The hot columns; PermanentTableError when the table, its ledger column or an integer type for it is missing."""
    if columns is None:
        raise PermanentTableError(
            f"table {pg.schema_name}.{spec.name} does not exist in PostgreSQL {pg.describe()}; "
            "create it (schema/hot_buffer.sql) or remove it from flush.tables"
        )
    types = {c.name: c.type for c in columns}
    if spec.ledger_column not in types:
        raise PermanentTableError(
            f"table {pg.schema_name}.{spec.name} has no ledger column {spec.ledger_column!r}; "
            "fix the table or its ledger_column in schema/tables.yaml"
        )
    if types[spec.ledger_column] not in DUCKDB_INTEGER_TYPES:
        raise PermanentTableError(
            ledger_type_refusal(pg.schema_name, spec.name, spec.ledger_column, types[spec.ledger_column])
        )
    return columns


def retry_unless_permanent(task: Any, task_run: Any, state: State) -> bool:
    """Prefect's retry_condition_fn: retry transient failures, not those retrying cannot fix."""
    exception = state.result(raise_on_failure=False)
    return not isinstance(exception, PermanentTableError)


def _explain_invalid_utf8(
    lake: LakeSession, spec: TableSpec, columns: tuple[Column, ...], mark: Mark, message: str
) -> str:
    try:
        found = invalid_utf8(lake, spec, list(columns), mark.watermark)
    except duckdb.Error as exc:  # the diagnosis is a courtesy; the original error still stands
        return f"{message} (could not locate it: {exc})"
    if not found:
        return message
    return (
        "invalid UTF-8, which the lake cannot store, in "
        + "; ".join(found)
        + ". Fix or re-encode those values in PostgreSQL; the table's rows stay there until then"
    )


def log_lake_changes(logger: Any, table: str, result: CopyResult) -> None:
    """What a copy changed in the lake besides inserting: earlier commits it replaced, columns it added."""
    if result.undone_snapshots:
        logger.warning(
            "Replaced %s unconfirmed earlier lake commit(s) of %s (snapshots %s): their rows were still in PostgreSQL",
            len(result.undone_snapshots),
            table,
            result.undone_snapshots,
        )
    if result.added_columns:
        logger.info("Added columns %s to lake table %s", result.added_columns, table)


@task(
    name="flush-table",
    task_run_name="flush-{spec.name}",
    cache_policy=NO_CACHE,
    persist_result=False,
    retry_condition_fn=retry_unless_permanent,
)
def flush_table(
    spec: TableSpec,
    mark: Mark,
    table_plan: TablePlan,
    lake: LakeSession,
    state: StateStore,
    pool: ConnectionPool,
    owner: LabelOwner,
    postgres: PostgresSettings,
    data_path: str,
    takeover: bool = False,
    certify: CertificateMode = "lake",
) -> FlushOutcome:
    """Undo this table's unconfirmed lake commits and copy rows <= watermark in one labelled lake commit.

    `table_plan`: the columns of both sides, read once for the run; `owner`: whose lake commits may be undone;
    `postgres` and `data_path` only for messages (the password is redacted from them).
    takeover: copy only the rows the lake does not hold yet (matched by natural key, or all columns), count the rest.
    certify: how to record the batch's completeness certificate (flush.certificate: lake, source or off).
    """
    logger = get_run_logger()
    started = time.perf_counter()
    attempt_start = time.time()  # wall clock, comparable with file times: what this attempt wrote is newer
    try:
        hot_columns = check_hot_table(postgres, spec, table_plan.hot_columns)
        first_attempt = state.record_pending(mark.batch_id, spec.name, mark.watermark)
        undo = state.open_batches(spec.name)
        if first_attempt:  # this batch has no lake commit yet; with no other open batch the undo lookup is skipped
            undo = [b for b in undo if b != mark.batch_id]
        reconcile = None
        if takeover:
            with pool.connection() as conn:
                reconcile = reconcile_for(lake, conn, spec, [c.name for c in hot_columns])
        result = copy_table(
            lake, spec, mark, list(hot_columns), list(table_plan.lake_columns), undo, owner, reconcile, certify
        )
    except (duckdb.Error, SchemaMismatch, TableFlushError, CertificateMismatch, CatalogLookupError) as exc:
        password = postgres.password.get_secret_value()
        message = redact(str(exc), password)
        if is_invalid_unicode(message):
            message = _explain_invalid_utf8(lake, spec, table_plan.hot_columns or (), mark, message)
        if not isinstance(exc, TableFlushError):
            message = explain_disk_full(message, data_path)
            message = f"flushing {spec.name} (ledgers <= {mark.watermark}) failed: {message}"
        if isinstance(
            exc, (duckdb.Error, CertificateMismatch)
        ):  # the lake transaction rolled back; we still hold the flusher lock
            if cleaned := cleanup_message(lake, spec.name, attempt_start):
                message = f"{message}; {redact(cleaned, password)}"
        state.record_failed(mark.batch_id, spec.name, message, mark.watermark)
        permanent = isinstance(exc, (PermanentTableError, SchemaMismatch))
        raise (PermanentTableError if permanent else TableFlushError)(message) from None
    seconds = time.perf_counter() - started
    expected = result.rows_expected if takeover else None
    state.record_committed(
        mark.batch_id, spec.name, result.snapshot_id, result.rows, seconds, undo, expected, result.certificate
    )
    log_lake_changes(logger, spec.name, result)
    if takeover:
        logger.info(
            "Takeover of %s: %s rows copied to DuckLake, %s already there (matched by %s) in %.2fs",
            spec.name,
            result.rows,
            result.already_in_lake,
            ", ".join(reconcile.key) if reconcile.key else "all columns",
            seconds,
        )
    else:
        logger.info("Flushed %s rows from %s to DuckLake in %.2fs", result.rows, spec.name, seconds)
    return FlushOutcome(
        spec.name,
        result.rows,
        result.snapshot_id,
        seconds,
        len(result.undone_snapshots),
        result.added_columns,
        result.already_in_lake,
        result.read_point,
    )
