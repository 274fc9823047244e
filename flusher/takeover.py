"""Taking over from the Go postgres-ducklake-flusher: detect its traces, and report what a takeover would do.

The Go service keeps `cold_flusher_checkpoint` (id = 1, last_flushed_watermark, updated_at) in the hot database and
deletes only up to min(watermark, downstream checkpoint). When it is stopped, the hot buffer still holds rows at or
below its checkpoint that are already in the lake, and maybe late rows that are not. The takeover flush (the
bronze-flush flow with takeover=True) copies only the missing ones and deletes them all; this module holds what it
and its dry run need besides the flow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg import sql

from flusher.config import Settings
from flusher.hot import (
    DUCKDB_INTEGER_TYPES,
    ControlSession,
    choose_watermark,
    connect,
    ledger_type_refusal,
    validate_snapshot_id,
)
from flusher.lake import COMMIT_AUTHOR, HOT, Column, LakeSession, redact
from flusher.quoting import quote_ident, quote_literal
from flusher.reconcile import (
    columns_before_us,
    lake_duplicates_sql,
    missing_rows_sql,
    plan_reconcile,
    primary_key,
)
from flusher.registry import TableSpec
from flusher.statuses import BatchStatus
from flusher.transfer import plan_columns

GO_CHECKPOINT_TABLE = "cold_flusher_checkpoint"


@dataclass(frozen=True)
class GoCheckpoint:
    watermark: int
    updated_at: datetime | None


def _exists(conn: psycopg.Connection, schema: str, table: str) -> bool:
    name = sql.Identifier(schema, table).as_string(conn)
    return conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is not None


def go_checkpoint(conn: psycopg.Connection, schema: str) -> GoCheckpoint | None:
    """The Go flusher's checkpoint row in the hot database (its table in `schema`), or None if it has none."""
    if not _exists(conn, schema, GO_CHECKPOINT_TABLE):
        return None
    row = conn.execute(
        sql.SQL("SELECT last_flushed_watermark, updated_at FROM {} WHERE id = 1").format(
            sql.Identifier(schema, GO_CHECKPOINT_TABLE)
        )
    ).fetchone()
    return GoCheckpoint(int(row[0]), row[1]) if row else None


def takeover_floor(checkpoint: GoCheckpoint | None) -> int | None:
    """The lowest watermark a takeover may use: the Go checkpoint (rows at or below it may be in the lake)."""
    return checkpoint.watermark if checkpoint is not None and checkpoint.watermark > 0 else None


def _state_watermark(conn: psycopg.Connection, state_schema: str) -> int | None:
    """The highest confirmed watermark of this flusher's state, read-only (None when the state does not exist)."""
    if not _exists(conn, state_schema, "table_batches"):
        return None
    return conn.execute(
        sql.SQL("SELECT max(watermark) FROM {} WHERE status = {}").format(
            sql.Identifier(state_schema, "table_batches"), sql.Literal(str(BatchStatus.CONFIRMED))
        )
    ).fetchone()[0]


@dataclass
class TableTakeover:
    table: str
    matched_by: str  # the key columns, or "all columns"
    in_hot: int = 0  # rows at or below the watermark
    already_in_lake: int = 0  # would only be deleted
    missing: int = 0  # would be copied, then deleted
    lake_duplicates: int | None = None  # extra lake rows per key in the compared range; None without a key
    lake_rows: int = 0
    ours: bool = False  # the lake table has commits of this flusher
    error: str | None = None


@dataclass
class TakeoverPlan:
    watermark: int | None
    go: GoCheckpoint | None
    state_watermark: int | None
    tables: list[TableTakeover] = field(default_factory=list)
    no_catalog: bool = False  # there is no lake yet: nothing can be duplicated

    @property
    def foreign_tables(self) -> list[str]:
        """Lake tables holding rows but no commit of this flusher: another writer filled them."""
        return [t.table for t in self.tables if t.lake_rows and not t.ours]

    @property
    def needed(self) -> bool:
        return self.go is not None or bool(self.foreign_tables)


def _committed_tables(session: LakeSession) -> set[str]:
    with session.cursor() as cur:
        rows = cur.execute(
            "SELECT DISTINCT unnest(list_concat([json_extract_string(commit_extra_info, '$.table')], "
            "json_extract_string(commit_extra_info, '$.tables[*]'))) "
            f"FROM {session.metadata('ducklake_snapshot_changes')} WHERE author = ?",
            [COMMIT_AUTHOR],
        ).fetchall()
    return {r[0] for r in rows if r[0]}


def _catalog_exists(settings: Settings) -> bool:
    """Whether the DuckLake catalog exists (attaching a missing one would create it: a dry run must not)."""
    lake = settings.ducklake
    try:
        with psycopg.connect(lake.catalog_conninfo(), autocommit=True) as conn:
            return _exists(conn, lake.metadata_schema, "ducklake_metadata")
    except psycopg.Error:
        return True  # let the lake attach report what is wrong, with its own message


def plan_takeover(settings: Settings, specs: list[TableSpec]) -> TakeoverPlan:
    """What a takeover would do now, per table, read in one pinned PostgreSQL snapshot; writes nothing anywhere."""
    pg = settings.postgres
    with connect(pg) as conn:
        go = go_checkpoint(conn, pg.schema_name)
        state_wm = _state_watermark(conn, settings.flush.state_schema)
        keys = {s.name: primary_key(conn, pg.schema_name, s.name) for s in specs if s.natural_key is None}
    control = ControlSession(pg)
    try:
        snapshot, hot_min, hot_max = control.pin_snapshot()
        floors = [v for v in (state_wm, takeover_floor(go)) if v is not None]
        watermark = choose_watermark(hot_min, hot_max, max(floors) if floors else None, 0)
        plan = TakeoverPlan(watermark, go, state_wm)
        if not _catalog_exists(settings):
            plan.no_catalog = True
            plan.tables = [TableTakeover(s.name, "(no lake)") for s in specs]
            return plan
        with LakeSession(settings) as session:
            ours = _committed_tables(session)
            hot_columns = session.columns_by_table(HOT, pg.schema_name)
            lake_columns = session.columns_by_table(session.lake, session.schema)
            for spec in specs:
                hot, lake = hot_columns.get(spec.name), lake_columns.get(spec.name)
                pk = keys.get(spec.name, [])
                plan.tables.append(_plan_table(session, snapshot, spec, watermark, hot, lake, pk, spec.name in ours))
        return plan
    finally:
        control.close()


def _plan_table(
    session: LakeSession,
    snapshot: str,
    spec: TableSpec,
    watermark: int | None,
    hot: list[Column] | None,
    lake: list[Column] | None,
    pk: list[str],
    ours: bool,
) -> TableTakeover:
    """One table's counts, read in a DuckDB transaction pinned to the PostgreSQL snapshot, then rolled back."""
    names = [c.name for c in hot or []]
    cur = session.cursor()
    try:
        before = columns_before_us(session, cur, spec.name) if lake is not None else []
        reconcile = plan_reconcile(spec, pk, before, names)
        matched = ", ".join(reconcile.key) if reconcile.key else "all columns"
        line = TableTakeover(spec.name, matched if lake is not None else "(not in the lake)", ours=ours)
        if hot is None:
            line.error = "missing in PostgreSQL"
            return line
        ledger_type = {c.name: c.type for c in hot}.get(spec.ledger_column)
        if ledger_type is not None and ledger_type not in DUCKDB_INTEGER_TYPES:  # a compare would be a Binder Error
            schema = session.settings.postgres.schema_name
            line.error = ledger_type_refusal(schema, spec.name, spec.ledger_column, ledger_type)
            return line
        if lake is not None:
            line.lake_rows = cur.execute(f"SELECT count(*) FROM {session.table(spec.name)}").fetchone()[0]
        if watermark is None:
            return line
        cur.execute("BEGIN")
        snap = quote_literal("SET TRANSACTION SNAPSHOT " + quote_literal(validate_snapshot_id(snapshot)))
        cur.execute(f"CALL postgres_execute({quote_literal(HOT)}, {snap})")
        ledger = quote_ident(spec.ledger_column)
        hot_table = session.hot_table(spec.name)
        line.in_hot, low = cur.execute(
            f"SELECT count(*), min({ledger}) FROM {hot_table} WHERE {ledger} <= ?", [watermark]
        ).fetchone()
        if lake is None or line.in_hot == 0:
            line.missing = line.in_hot
        else:
            select = plan_columns(spec.name, hot, lake).select
            lake_table = session.table(spec.name)
            query, params = missing_rows_sql(spec, hot_table, lake_table, select, reconcile, watermark, low)
            line.missing = cur.execute(f"SELECT count(*) FROM ({query})", params).fetchone()[0]
            if reconcile.key:
                dup, dup_params = lake_duplicates_sql(spec, session.table(spec.name), reconcile, watermark, low)
                line.lake_duplicates = cur.execute(dup, dup_params).fetchone()[0]
        line.already_in_lake = line.in_hot - line.missing
        cur.execute("ROLLBACK")
        return line
    except Exception as exc:  # noqa: BLE001 - one table's problem is reported, the others still planned
        message = redact(str(exc), session.settings.postgres.password.get_secret_value())
        return TableTakeover(spec.name, "-", error=(message.splitlines() or [type(exc).__name__])[0])
    finally:
        cur.close()


def render_plan(plan: TakeoverPlan) -> str:
    """The dry run's report: why a takeover is (not) needed, and per table what it would copy and delete."""
    out = []
    if plan.go is not None:
        out.append(
            f"Go flusher checkpoint found: {GO_CHECKPOINT_TABLE}.last_flushed_watermark = {plan.go.watermark} "
            f"(updated {plan.go.updated_at}); rows at or below it may be in the lake already."
        )
    else:
        out.append(f"No Go flusher checkpoint ({GO_CHECKPOINT_TABLE}) in the hot database.")
    if plan.no_catalog:
        out.append("No DuckLake catalog yet: nothing is in the lake, so nothing can be duplicated.")
    if plan.foreign_tables:
        out.append(f"Lake tables with rows but no commit of this flusher: {', '.join(plan.foreign_tables)}.")
    out.append(
        "A takeover is needed before the first flush."
        if plan.needed
        else "No sign of another flusher: a takeover is not needed (it would still be safe)."
    )
    if plan.watermark is None:
        out.append("The hot buffer is empty: nothing to copy or delete.")
        return "\n".join(out)
    out.append(f"At watermark {plan.watermark} (this flusher's last confirmed watermark: {plan.state_watermark}):")
    out.append(f"{'table':34} {'hot<=W':>9} {'in lake':>9} {'missing':>9} {'lake dup':>9}  matched by")
    for t in plan.tables:
        if t.error:
            out.append(f"{t.table:34} error: {t.error}")
            continue
        dup = "-" if t.lake_duplicates is None else str(t.lake_duplicates)
        out.append(f"{t.table:34} {t.in_hot:>9} {t.already_in_lake:>9} {t.missing:>9} {dup:>9}  {t.matched_by}")
    copy = sum(t.missing for t in plan.tables)
    only_delete = sum(t.already_in_lake for t in plan.tables)
    out.append(
        f"A takeover would copy {copy} rows to the lake and delete {copy + only_delete} from PostgreSQL "
        f"({only_delete} of them already in the lake). Nothing was written."
    )
    dups = sum(t.lake_duplicates or 0 for t in plan.tables)
    if dups:
        out.append(
            f"The lake holds {dups} rows more than once by natural key (in the ledger range compared); a "
            "takeover leaves them as they are: remove them yourself if they are unwanted."
        )
    return "\n".join(out)
