"""`verify`: check the hot buffer and the lake together, per table and ledger range (issue 12).

Per table: rows in hot and in the lake, lake duplicates by natural key, rows present in both places (by key), and
each confirmed batch's completeness certificate recomputed from the lake (flusher/certificate.py); for the ledger
table, gaps in the dense ledger sequence of hot ∪ lake. What counts as a discrepancy and how ranges are named is in
flusher/verify_report.py. Read-only: it changes nothing anywhere, and takes no lock (a flush running meanwhile may
show rows in both places until its delete).
"""

from __future__ import annotations

import time
from collections import defaultdict

import duckdb
import psycopg

from flusher import certificate as cert
from flusher.config import Settings
from flusher.hot import make_pool
from flusher.lake import LakeSession
from flusher.maintenance import lake_tables
from flusher.quoting import quote_ident
from flusher.reconcile import primary_key
from flusher.registry import WATERMARK_COLUMN, WATERMARK_TABLE, TableSpec, selected_tables
from flusher.state import ConfirmedBatch, StateStore
from flusher.verify_report import (
    DUPLICATE,
    GAP,
    IN_BOTH,
    BatchFigures,
    Finding,
    TableCheck,
    VerifyReport,
    edge_gaps,
    judge_certificate,
    ranges,
)

_MAX_LEDGERS_LISTED = 10_000  # ledgers read back per finding to name its ranges


def run_verify(
    settings: Settings, ledger_from: int | None = None, ledger_to: int | None = None, tables: list[str] | None = None
) -> VerifyReport:
    """Check every selected table (or `tables`) over ledgers [ledger_from, ledger_to] (None: unbounded)."""
    started = time.perf_counter()
    specs = selected_tables(settings.flush, tables)
    checks, gaps = [], []
    with make_pool(settings.postgres) as pool, LakeSession(settings) as lake:
        state = StateStore(pool, settings.flush.state_schema)
        in_lake = set(lake_tables(lake))
        with pool.connection() as conn:
            keys = {s.name: _key(conn, settings.postgres.schema_name, s) for s in specs}
        with lake.cursor() as cur:
            for spec in specs:
                if spec.name not in in_lake:
                    checks.append(TableCheck(spec.name, notes=["not in the lake"]))
                    continue
                check = _check_table(lake, cur, state, spec, keys[spec.name], ledger_from, ledger_to)
                checks.append(check)
                if spec.name == WATERMARK_TABLE:
                    gaps = _gaps(lake, cur, ledger_from, ledger_to)
                    check.findings += [Finding(spec.name, GAP, g[0], g[1], "no ledger in hot or lake") for g in gaps]
    return VerifyReport(ledger_from, ledger_to, checks, gaps, time.perf_counter() - started)


def _key(conn: psycopg.Connection, schema: str, spec: TableSpec) -> tuple[str, ...]:
    """The natural key (schema/tables.yaml, else the hot table's primary key); empty: none, not checked by key."""
    if spec.natural_key is not None:
        return spec.natural_key
    return tuple(primary_key(conn, schema, spec.name))


def _range_sql(column: str, first: int | None, last: int | None, alias: str = "") -> tuple[str, list[int]]:
    name = (f"{alias}." if alias else "") + quote_ident(column)
    clauses, params = [], []
    if first is not None:
        clauses.append(f"{name} >= ?")
        params.append(first)
    if last is not None:
        clauses.append(f"{name} <= ?")
        params.append(last)
    return " AND ".join(clauses) or "true", params


def _check_table(
    lake: LakeSession,
    cur: duckdb.DuckDBPyConnection,
    state: StateStore,
    spec: TableSpec,
    key: tuple[str, ...],
    first: int | None,
    last: int | None,
) -> TableCheck:
    check = TableCheck(spec.name)
    where, params = _range_sql(spec.ledger_column, first, last)
    lake_table, hot_table = lake.table(spec.name), lake.hot_table(spec.name)
    check.lake_rows = cur.execute(f"SELECT count(*) FROM {lake_table} WHERE {where}", params).fetchone()[0]
    try:
        check.hot_rows = cur.execute(f"SELECT count(*) FROM {hot_table} WHERE {where}", params).fetchone()[0]
    except duckdb.CatalogException:
        check.notes.append("not in the hot buffer")
        hot_table = None
    if not key:
        check.notes.append("no natural key: duplicates and rows in both places not checked")
    else:
        check.lake_duplicates = _duplicates(cur, check, spec, lake_table, key, where, params)
        if hot_table is not None:
            check.in_both = _in_both(cur, check, spec, lake_table, hot_table, key, first, last)
    _check_certificates(cur, check, spec, lake_table, state.confirmed_batches(spec.name), first, last)
    return check


def _ledger_findings(check: TableCheck, kind: str, ledgers: list[int], detail: str) -> None:
    for lo, hi in ranges(ledgers):
        check.findings.append(Finding(check.table, kind, lo, hi, detail))


def _duplicates(
    cur: duckdb.DuckDBPyConnection,
    check: TableCheck,
    spec: TableSpec,
    lake_table: str,
    key: tuple[str, ...],
    where: str,
    params: list[int],
) -> int:
    """Extra lake rows per key (a row held twice counts 1); the ledgers they are at become findings."""
    cols = ", ".join(map(quote_ident, key))
    ledger = quote_ident(spec.ledger_column)
    rows = cur.execute(
        f"SELECT sum(n - 1), list(DISTINCT l ORDER BY l)[:{_MAX_LEDGERS_LISTED}] FROM ("
        f"SELECT count(*) AS n, min({ledger}) AS l FROM {lake_table} WHERE {where} GROUP BY {cols} "
        "HAVING count(*) > 1)",
        params,
    ).fetchone()
    extra = int(rows[0] or 0)
    if extra:
        _ledger_findings(check, DUPLICATE, rows[1], f"{extra} extra lake rows by key ({', '.join(key)}) in the table")
    return extra


def _in_both(
    cur: duckdb.DuckDBPyConnection,
    check: TableCheck,
    spec: TableSpec,
    lake_table: str,
    hot_table: str,
    key: tuple[str, ...],
    first: int | None,
    last: int | None,
) -> int:
    """Hot rows whose key the lake holds too; the lake is read only over the ledgers the hot rows span."""
    hot_where, params = _range_sql(spec.ledger_column, first, last, "h")
    ledger = quote_ident(spec.ledger_column)
    low, high = cur.execute(
        f"SELECT min({ledger}), max({ledger}) FROM {hot_table} h WHERE {hot_where}", params
    ).fetchone()
    if low is None:
        return 0
    # A key holding the ledger column pins it: only lake rows in the hot rows' span can match.
    lake_where = f"l.{ledger} BETWEEN {int(low)} AND {int(high)}" if spec.ledger_column in key else "true"
    match = " AND ".join(f"l.{quote_ident(c)} = h.{quote_ident(c)}" for c in key)
    count, ledgers = cur.execute(
        f"SELECT count(*), list(DISTINCT h.{ledger} ORDER BY h.{ledger})[:{_MAX_LEDGERS_LISTED}] FROM {hot_table} h "
        f"WHERE {hot_where} AND EXISTS (SELECT 1 FROM {lake_table} l WHERE {lake_where} AND {match})",
        params,
    ).fetchone()
    if count:
        _ledger_findings(
            check,
            IN_BOTH,
            ledgers or [],
            f"{count} rows in both (a lake commit not yet confirmed by its delete; the next flush resolves it)",
        )
    return int(count)


def _covers(batch: ConfirmedBatch, first: int | None, last: int | None) -> bool:
    """Whether a batch's ledgers (above the previous batch's watermark, up to its own) meet [first, last]."""
    if first is not None and batch.watermark < first:
        return False
    return last is None or batch.previous_watermark is None or batch.previous_watermark < last


def _check_certificates(
    cur: duckdb.DuckDBPyConnection,
    check: TableCheck,
    spec: TableSpec,
    lake_table: str,
    batches: list[ConfirmedBatch],
    first: int | None,
    last: int | None,
) -> None:
    """Recompute each certified batch's count and digest from the lake rows of its snapshot (one scan per column
    list: batches after a column was added hash one more column)."""
    by_columns: dict[tuple[str, ...], list[ConfirmedBatch]] = defaultdict(list)
    other_algorithms = set()
    for batch in batches:
        if not _covers(batch, first, last):
            continue
        if batch.certificate is None:
            check.batches_uncertified += 1
        elif batch.certificate.algorithm != cert.ALGORITHM:
            other_algorithms.add(batch.certificate.algorithm)
            check.batches_uncertified += 1
        else:
            by_columns[batch.certificate.columns].append(batch)
    if other_algorithms:
        check.notes.append(f"certificates by {sorted(other_algorithms)} not checked: this is {cert.ALGORITHM}")
    for columns, group in by_columns.items():
        found = cert.snapshot_digests(cur, lake_table, columns, spec.ledger_column, [b.snapshot_id for b in group])
        for batch in group:
            check.batches_certified += 1
            now = found.get(batch.snapshot_id)
            # The ledgers its rows still span, else those above the table's previous batch up to its watermark.
            after = None if batch.previous_watermark is None else batch.previous_watermark + 1
            span = (now[2], now[3]) if now else (after, batch.watermark)
            recorded = BatchFigures(batch.certificate.rows, batch.certificate.digest)
            finding = judge_certificate(
                spec.name,
                batch.batch_id,
                batch.snapshot_id,
                span,
                recorded,
                BatchFigures(now[0], now[1]) if now else None,
            )
            if finding:
                check.findings.append(finding)


def _gaps(
    lake: LakeSession, cur: duckdb.DuckDBPyConnection, first: int | None, last: int | None
) -> list[tuple[int, int]]:
    """Missing ledgers in the dense sequence of ledgers_row_v2 over hot ∪ lake (and at the edges of an explicit
    range)."""
    seq = quote_ident(WATERMARK_COLUMN)
    where, params = _range_sql(WATERMARK_COLUMN, first, last)
    union = (
        f"SELECT {seq} AS s FROM {lake.table(WATERMARK_TABLE)} WHERE {where} "
        f"UNION SELECT {seq} FROM {lake.hot_table(WATERMARK_TABLE)} WHERE {where}"
    )
    inner = cur.execute(
        f"SELECT s + 1, n - 1 FROM (SELECT s, lead(s) OVER (ORDER BY s) AS n FROM ({union})) WHERE n > s + 1 "
        "ORDER BY 1",
        params + params,
    ).fetchall()
    low, high = cur.execute(f"SELECT min(s), max(s) FROM ({union})", params + params).fetchone()
    present = None if low is None else (int(low), int(high))
    return sorted([(int(a), int(b)) for a, b in inner] + edge_gaps(present, first, last))
