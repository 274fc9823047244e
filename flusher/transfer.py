"""Copying one table from the hot buffer into the lake, by column name, in one labelled lake commit."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import duckdb
from psycopg import sql

from flusher import certificate as cert
from flusher import failpoints
from flusher.config import CertificateMode
from flusher.hot import Mark, validate_snapshot_id
from flusher.lake import COMMIT_AUTHOR, HOT, Column, LakeSession
from flusher.quoting import quote_ident, quote_literal
from flusher.reconcile import Reconcile, missing_rows_sql
from flusher.registry import TableSpec
from flusher.secrets import MaskedMessage

# Hot (PostgreSQL, as DuckDB sees it) types the lake stores as they are.
_SAME_TYPES = {
    "BOOLEAN",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "REAL",
    "FLOAT",
    "DOUBLE",
    "VARCHAR",
    "DATE",
    "TIME",
    "TIMESTAMP",
    "UUID",
    "BLOB",
    "INTERVAL",
    "HUGEINT",
}


class SchemaMismatch(MaskedMessage, RuntimeError):
    """A hot column cannot be stored in the lake table; the message names it and what to do."""


@dataclass(frozen=True)
class ColumnPlan:
    select: list[str]  # expressions, each aliased to its lake column name
    values: dict[str, str] = field(default_factory=dict)  # lake column name -> the same expression, unaliased
    add_to_lake: list[Column] = field(default_factory=list)  # hot columns the lake table lacks
    missing_in_hot: list[str] = field(default_factory=list)  # lake columns left NULL


# Hot types with no lossless lake type, and what to do about each.
_REFUSED_HINTS = {
    "NUMERIC": "NUMERIC without a precision reaches DuckDB as DOUBLE and would lose digits; declare NUMERIC(p,s) "
    "(DuckDB keeps up to 38 digits) or store it as TEXT",
}


def lake_type_for(hot_type: str) -> str | None:
    """The lake type that stores a hot column's values losslessly, or None if there is none."""
    if hot_type == "TIMESTAMP WITH TIME ZONE":
        return "TIMESTAMP"  # its UTC wall time (see _value)
    if hot_type.endswith("[]") or hot_type == "JSON":
        return "VARCHAR"  # arrays as JSON text, JSONB as its text
    if hot_type in _SAME_TYPES or hot_type.startswith("DECIMAL("):
        return hot_type
    return None


def _value(column: Column, lake_type: str) -> str:
    """The expression that turns a hot column's value into its lake value."""
    name = quote_ident(column.name)
    if column.type.endswith("[]"):
        return f"CAST(to_json({name}) AS VARCHAR)"
    if column.type == lake_type:
        return name
    if column.type == "TIMESTAMP WITH TIME ZONE" and lake_type == "TIMESTAMP":
        # The instant's UTC wall time, spelled out: a plain CAST would use the session's TimeZone.
        return f"timezone('UTC', {name})"
    return f"CAST({name} AS {lake_type})"


def _expression(value: str, column: Column) -> str:
    name = quote_ident(column.name)
    return value if value == name else f"{value} AS {name}"


def plan_columns(table: str, hot: list[Column], lake: list[Column]) -> ColumnPlan:
    """Match hot columns to lake columns by name (never position); new hot columns are added to the lake."""
    lake_types = {c.name: c.type for c in lake}
    select, add, values = [], [], {}
    for column in hot:
        mapped = lake_type_for(column.type)
        if mapped is None:
            hint = _REFUSED_HINTS.get(
                column.type, "change its type in PostgreSQL or leave the table out of flush.tables"
            )
            raise SchemaMismatch(
                f"column {table}.{column.name} has type {column.type}, which the lake cannot store: {hint}"
            )
        target = lake_types.get(column.name, mapped)
        if column.name not in lake_types:
            add.append(Column(column.name, target))
        values[column.name] = _value(column, target)
        select.append(_expression(values[column.name], column))
    hot_names = {c.name for c in hot}
    return ColumnPlan(select, values, add, [c.name for c in lake if c.name not in hot_names])


@dataclass(frozen=True)
class CopyResult:
    rows: int
    snapshot_id: int | None  # the lake snapshot of this commit; None when nothing was committed
    undone_snapshots: list[int]
    added_columns: list[str]
    already_in_lake: int = 0  # takeover: hot rows at or below the watermark the lake already held (not copied)
    certificate: cert.Certificate | None = None  # count and digest of the rows copied (None: nothing copied)
    seen_snapshot: int | None = None  # nothing committed: the lake snapshot the transaction read (and rolled back)
    seconds: float | None = None  # in a shared commit: this table's part (its writes, plus the commit they share)

    @property
    def rows_expected(self) -> int:
        """Rows the delete must remove: those copied and those found already in the lake."""
        return self.rows + self.already_in_lake

    @property
    def read_point(self) -> int | None:
        """The lake snapshot that holds this batch's rows (copied or already there): the table's read point once
        the delete confirms the batch (flusher/reader.py)."""
        return self.snapshot_id if self.snapshot_id is not None else self.seen_snapshot


@dataclass(frozen=True)
class LabelOwner:
    """Whose commits a flush may undo: those labelled with `state_id` (and, for a state from before state ids,
    those labelled without one whose batch is at most `legacy_labels_upto`)."""

    state_id: str
    legacy_labels_upto: int | None = None


def label(spec: TableSpec, mark: Mark, state_id: str, certificate: cert.Certificate | None = None) -> tuple[str, str]:
    """The commit message and extra info that identify this table's commit for this batch of this state."""
    info = {"state": state_id, "table": spec.name, "batch": mark.batch_id, "watermark": mark.watermark}
    if certificate is not None:
        info["certificate"] = certificate.label()
    return f"flush {spec.name} batch {mark.batch_id} up to ledger {mark.watermark}", json.dumps(info)


def group_label(
    tables: list[str], mark: Mark, state_id: str, certificates: dict[str, cert.Certificate | None]
) -> tuple[str, str]:
    """The label of one commit holding several tables' parts of a batch: `tables` instead of `table`, and each
    table's certificate under `certificates`."""
    info: dict = {"state": state_id, "tables": sorted(tables), "batch": mark.batch_id, "watermark": mark.watermark}
    labels = {name: c.label() for name, c in sorted(certificates.items()) if c is not None}
    if labels:
        info["certificates"] = labels
    message = f"flush {len(tables)} tables batch {mark.batch_id} up to ledger {mark.watermark}"
    return message, json.dumps(info)


def labelled_snapshots(
    session: LakeSession, cur: duckdb.DuckDBPyConnection, table: str, batches: list[int], owner: LabelOwner
) -> list[int]:
    """Lake snapshots this state committed for `table` in any of `batches` (alone, or with other tables in one).

    Matches author, state id, table and batch: a batch id alone is not this state's (another or an older state
    allocated the same ids). Reads the catalog's ducklake_snapshot_changes directly: the author filter reaches the
    catalog database, and it costs a fraction of `snapshots()`, which assembles every snapshot's change list first.
    """
    if not batches:
        return []
    legacy = owner.legacy_labels_upto if owner.legacy_labels_upto is not None else -1  # -1: no batch is legacy
    rows = cur.execute(
        f"SELECT snapshot_id FROM {session.metadata('ducklake_snapshot_changes')} "
        "WHERE author = ? AND (json_extract_string(commit_extra_info, '$.table') = ? "
        "  OR list_contains(json_extract_string(commit_extra_info, '$.tables[*]'), ?)) "
        "AND TRY_CAST(json_extract_string(commit_extra_info, '$.batch') AS BIGINT) IN (SELECT unnest(?::BIGINT[])) "
        "AND (json_extract_string(commit_extra_info, '$.state') = ? "
        "  OR (json_extract_string(commit_extra_info, '$.state') IS NULL "
        "      AND TRY_CAST(json_extract_string(commit_extra_info, '$.batch') AS BIGINT) <= ?)) "
        "ORDER BY snapshot_id",
        [COMMIT_AUTHOR, table, table, batches, owner.state_id, legacy],
    ).fetchall()
    return [r[0] for r in rows]


def committed_snapshot(session: LakeSession, info: str) -> int | None:
    """The snapshot of the commit labelled exactly `info`, asked of the catalog database directly: one round trip
    where a DuckDB transaction costs ~7, once per commit (DuckLake numbers a snapshot only as it commits)."""
    row = session.catalog.fetch_one(
        sql.SQL("SELECT max(snapshot_id) FROM {} WHERE author = %s AND commit_extra_info = %s").format(
            session.catalog.table("ducklake_snapshot_changes")
        ),
        [COMMIT_AUTHOR, info],
    )
    return row[0] if row else None


def current_snapshot(session: LakeSession, cur: duckdb.DuckDBPyConnection) -> int:
    """The lake snapshot `cur`'s transaction reads."""
    return cur.execute(f"SELECT id FROM {quote_ident(session.lake)}.current_snapshot()").fetchone()[0]


def _begin(session: LakeSession, cur: duckdb.DuckDBPyConnection, mark: Mark) -> None:
    """Start the lake transaction whose every read of `hot` sees the watermark's PostgreSQL snapshot."""
    cur.execute("BEGIN")
    # Must come before anything else reads `hot` in this transaction: every scan then sees the watermark's snapshot.
    snapshot = quote_literal(validate_snapshot_id(mark.snapshot))
    cur.execute(f"CALL postgres_execute({quote_literal(HOT)}, {quote_literal('SET TRANSACTION SNAPSHOT ' + snapshot)})")


@dataclass(frozen=True)
class _Written:
    """What one table's part of a lake transaction wrote (nothing committed yet)."""

    rows: int
    undone: list[int]
    added: list[str]
    present: int
    certificate: cert.Certificate | None

    @property
    def changed(self) -> bool:
        """Whether the table's part changes the lake (else it need not be committed)."""
        return bool(self.rows or self.undone or self.added)


def _write(
    session: LakeSession,
    cur: duckdb.DuckDBPyConnection,
    mark: Mark,
    copy: TableCopy,
    owner: LabelOwner,
    reconcile: Reconcile | None,
    certify: CertificateMode,
) -> _Written:
    """In the open transaction: add new columns, undo `copy.undo`'s labelled commits, insert rows <= watermark
    (with `reconcile`, only those the lake lacks) and certify them."""
    spec = copy.spec
    plan = plan_columns(spec.name, list(copy.hot), list(copy.lake))
    target = session.table(spec.name)
    for column in plan.add_to_lake:
        cur.execute(f"ALTER TABLE {target} ADD COLUMN {quote_ident(column.name)} {column.type}")
    undone = labelled_snapshots(session, cur, spec.name, list(copy.undo), owner)
    if undone:
        cur.execute(f"DELETE FROM {target} WHERE snapshot_id IN (SELECT unnest(?::BIGINT[]))", [undone])
    if reconcile is None:
        rows = cur.execute(
            f"INSERT INTO {target} BY NAME SELECT {', '.join(plan.select)} FROM {session.hot_table(spec.name)} "
            f"WHERE {quote_ident(spec.ledger_column)} <= ?",
            [mark.watermark],
        ).fetchone()[0]
        present = 0
    else:
        rows, present = _insert_missing(cur, session, spec, mark, plan.select, reconcile)
    source = session.hot_table(spec.name) if reconcile is None else None  # a takeover copies only some hot rows
    certificate = _certify(cur, spec, mark, target, source, copy.lake, plan, rows, certify) if rows else None
    return _Written(rows, undone, [c.name for c in plan.add_to_lake], present, certificate)


def _commit(session: LakeSession, cur: duckdb.DuckDBPyConnection, message: str, info: str, tables: list[str]) -> None:
    """Label the open transaction and commit it."""
    cur.execute(
        f"CALL {quote_ident(session.lake)}.set_commit_message(?, ?, extra_info => ?)", [COMMIT_AUTHOR, message, info]
    )
    for table in tables:
        failpoints.hit("before_lake_commit", table)
    cur.execute("COMMIT")


@dataclass(frozen=True)
class TableCopy:
    """One table's part of a copy: its columns on both sides (read once per run) and the batches to undo."""

    spec: TableSpec
    hot: tuple[Column, ...]
    lake: tuple[Column, ...]
    undo: tuple[int, ...] = ()


def copy_table(
    session: LakeSession,
    spec: TableSpec,
    mark: Mark,
    hot: list[Column],
    lake: list[Column],
    undo: list[int],
    owner: LabelOwner,
    reconcile: Reconcile | None = None,
    certify: CertificateMode = "lake",
) -> CopyResult:
    """One lake transaction: undo unconfirmed earlier commits of this table, insert rows <= watermark, label, commit.

    `undo` lists batches whose labelled commits (if they exist) must go: their rows are still in PostgreSQL and
    are read again here, so the lake ends up with each row once. Only `owner`'s commits are matched. With
    `reconcile` (a takeover), only the rows the lake lacks are inserted; the others are counted in
    `already_in_lake`, read in the same transaction. `certify`: how to record the completeness certificate
    (flush.certificate: lake, source or off).
    """
    cur = session.cursor()
    try:
        _begin(session, cur, mark)
        written = _write(
            session, cur, mark, TableCopy(spec, tuple(hot), tuple(lake), tuple(undo)), owner, reconcile, certify
        )
        if not written.changed:
            seen = current_snapshot(session, cur) if written.present else None  # a takeover deletes rows found here
            cur.execute("ROLLBACK")
            return CopyResult(0, None, [], [], written.present, seen_snapshot=seen)
        message, info = label(spec, mark, owner.state_id, written.certificate)
        _commit(session, cur, message, info, [spec.name])
    except BaseException:
        _rollback(cur)
        raise
    finally:
        cur.close()
    failpoints.hit("after_lake_commit", spec.name)
    snapshot = committed_snapshot(session, info)
    return CopyResult(written.rows, snapshot, written.undone, written.added, written.present, written.certificate)


def copy_tables(
    session: LakeSession, copies: list[TableCopy], mark: Mark, owner: LabelOwner, certify: CertificateMode = "lake"
) -> dict[str, CopyResult]:
    """Every table of `copies` in ONE lake transaction and one labelled snapshot (flush.commit_groups).

    Per table the same steps as copy_table (undo its unconfirmed commits, insert, certify); the label names every
    table that changed, so a later run undoes each table's part of it on its own (labelled_snapshots). Any error
    rolls the whole transaction back: nothing of it is committed, and the caller flushes the tables one by one.
    """
    cur = session.cursor()
    written: dict[str, _Written] = {}
    seconds: dict[str, float] = {}
    try:
        started = time.perf_counter()
        _begin(session, cur, mark)
        for copy in copies:
            written[copy.spec.name] = _write(session, cur, mark, copy, owner, None, certify)
            seconds[copy.spec.name] = time.perf_counter() - started
            started = time.perf_counter()
        changed = [name for name, w in written.items() if w.changed]
        if not changed:
            cur.execute("ROLLBACK")
            return {name: CopyResult(0, None, [], [], seconds=seconds[name]) for name in written}
        message, info = group_label(changed, mark, owner.state_id, {n: written[n].certificate for n in changed})
        _commit(session, cur, message, info, changed)
    except BaseException:
        _rollback(cur)
        raise
    finally:
        cur.close()
    for name in changed:
        failpoints.hit("after_lake_commit", name)
    snapshot = committed_snapshot(session, info)
    shared = time.perf_counter() - started  # the commit and its lookup: every changed table waited for them
    return {
        name: CopyResult(
            w.rows,
            snapshot if w.changed else None,
            w.undone,
            w.added,
            0,
            w.certificate,
            seconds=seconds[name] + (shared if w.changed else 0.0),
        )
        for name, w in written.items()
    }


def _certify(
    cur: duckdb.DuckDBPyConnection,
    spec: TableSpec,
    mark: Mark,
    target: str,
    source: str | None,
    lake: tuple[Column, ...],
    plan: ColumnPlan,
    rows: int,
    certify: CertificateMode,
) -> cert.Certificate | None:
    """The completeness certificate of the rows this transaction inserted (flusher/certificate.py), before the
    commit: a count that disagrees with `rows` refuses the commit. Columns left NULL (missing in hot) are not hashed.

    "lake" reads the inserted rows back; "source" hashes the same values of the hot rows the INSERT read (`source`,
    in the same snapshot), when it copied all of them (None: a takeover copies only some, so they are read back).
    """
    if certify == "off":
        return None
    columns = [c.name for c in lake if c.name not in plan.missing_in_hot] + [c.name for c in plan.add_to_lake]
    if certify == "source" and source is not None:
        where = f"{quote_ident(spec.ledger_column)} <= {int(mark.watermark)}"
        return cert.certify_source(cur, spec.name, source, where, [plan.values[c] for c in columns], columns, rows)
    return cert.certify_transaction(cur, spec.name, target, columns, rows)


def _insert_missing(
    cur: duckdb.DuckDBPyConnection,
    session: LakeSession,
    spec: TableSpec,
    mark: Mark,
    select: list[str],
    reconcile: Reconcile,
) -> tuple[int, int]:
    """Insert the hot rows <= watermark the lake lacks; return (rows inserted, rows already in the lake)."""
    hot_table = session.hot_table(spec.name)
    total, low = cur.execute(
        f"SELECT count(*), min({quote_ident(spec.ledger_column)}) FROM {hot_table} "
        f"WHERE {quote_ident(spec.ledger_column)} <= ?",
        [mark.watermark],
    ).fetchone()
    if total == 0:
        return 0, 0
    query, params = missing_rows_sql(spec, hot_table, session.table(spec.name), select, reconcile, mark.watermark, low)
    rows = cur.execute(f"INSERT INTO {session.table(spec.name)} BY NAME {query}", params).fetchone()[0]
    return rows, total - rows


def _rollback(cur: duckdb.DuckDBPyConnection) -> None:
    try:
        cur.execute("ROLLBACK")
    except duckdb.Error:
        pass  # the transaction is already gone; nothing was committed
