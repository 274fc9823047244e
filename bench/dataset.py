"""Benchmark data: a realistic Hubble mix loaded once into a template database, restored bit for bit per repetition."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import psycopg
from psycopg import sql

from flusher.embedded import create_hot_schema
from flusher.registry import registry
from flusher.synthetic import load_synthetic

FIRST_LEDGER = 50_000_000
# Per ledger: one ledger row, a few transactions, more operations and effects, contract events; the 14 snapshot and
# state tables change in one ledger out of ten. 5,350 ledgers give ~88k rows, the seed service's workload (~86k).
ROWS_PER_LEDGER = {
    "ledgers_row_v2": 1,
    "transactions_row_v2": 2,
    "operations_row_v2": 4,
    "effects_row_v1": 6,
    "contract_events_stream_v1": 2,
}
SPARSE_EVERY = 10
XDR_CHARS = 160  # envelopes, metas, event and ledger-entry XDR; rows average ~1 KB in PostgreSQL
# ledgers: ~88k, ~440k (the remote regime's larger size), ~2.2M and ~10M rows
SIZES = {"seed": 5_350, "medium": 26_750, "large": 133_750, "catchup": 625_000}

# ~4.0M rows in one run: issue 15's memory case (bench/memprobe.py), not part of `make bench`.
SIZES["xl"] = 240_000


@dataclass(frozen=True)
class Dataset:
    """A loaded template database and what it holds."""

    size: str
    template: str
    ledgers: int
    first_ledger: int
    rows: dict[str, int]
    table_bytes: int  # heap + TOAST of the hot tables, indexes excluded: the data a flush moves
    load_seconds: float

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    def to_json(self) -> dict:
        return asdict(self) | {"total_rows": self.total_rows}


def enabled_tables() -> dict[str, str]:
    """The 19 default tables and their ledger columns."""
    return {t.name: t.ledger_column for t in registry().values() if t.enabled}


def _sparse(tables: dict[str, str]) -> dict[str, int]:
    return {name: SPARSE_EVERY for name in tables if name not in ROWS_PER_LEDGER}


def drop_database(admin_uri: str, name: str) -> None:
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def db_uri(admin_uri: str, name: str) -> str:
    return psycopg.conninfo.make_conninfo(admin_uri, dbname=name)


def build_template(admin_uri: str, size: str, ledgers: int) -> Dataset:
    """Load `ledgers` ledgers into a fresh database `bench_<size>`, frozen and analysed so copies start identical."""
    name = f"bench_{size}"
    drop_database(admin_uri, name)
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    tables = enabled_tables()
    started = time.perf_counter()
    with psycopg.connect(db_uri(admin_uri, name)) as conn:
        create_hot_schema(conn)
        rows = load_synthetic(
            conn, tables, FIRST_LEDGER, ledgers, ROWS_PER_LEDGER, every_n_ledgers=_sparse(tables), xdr_chars=XDR_CHARS
        )
        conn.commit()
    with psycopg.connect(db_uri(admin_uri, name), autocommit=True) as conn:
        # Hint bits and the visibility map set now, not by the first benchmark scan.
        conn.execute("VACUUM (FREEZE, ANALYZE)")
        table_bytes = conn.execute(
            "SELECT sum(pg_table_size(format('public.%%I', t)::regclass))::bigint FROM unnest(%s::text[]) AS t",
            (list(tables),),
        ).fetchone()[0]
    return Dataset(size, name, ledgers, FIRST_LEDGER, rows, table_bytes, time.perf_counter() - started)


def restore(admin_uri: str, template: str, target: str) -> None:
    """Replace database `target` with a file copy of `template` (identical pages, so every repetition starts equal)."""
    drop_database(admin_uri, target)
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                sql.Identifier(target), sql.Identifier(template)
            )
        )


def create_empty(admin_uri: str, name: str) -> None:
    """A fresh empty database (the lake catalog of one repetition)."""
    drop_database(admin_uri, name)
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def hot_counts(uri: str, tables: dict[str, str]) -> dict[str, int]:
    """Rows left in each hot table."""
    with psycopg.connect(uri, autocommit=True) as conn:
        return {
            t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", t))).fetchone()[0]
            for t in tables
        }
