"""A lake and hot buffer in the state the Go postgres-ducklake-flusher leaves them, built with DuckDB directly.

What the Go service does (withObsrvr/ttp-processor-demo, obsrvr-lake/postgres-ducklake-flusher):
- attaches the catalog as `ATTACH '<catalog_path>' AS <catalog> (DATA_PATH '...', METADATA_SCHEMA '...')`, then
  `CREATE SCHEMA IF NOT EXISTS <catalog>.<schema>`, creates the Bronze tables from its own DDL (an older column
  set: columns added to the hot tables later are missing) and partitions each by ledger_range;
- per table, one `INSERT INTO <catalog>.<schema>.<table> ... SELECT ... FROM postgres_scan(dsn, 'public', table)
  WHERE <ledger column> <= W` in a DuckDB session of a UTC container (TIMESTAMPTZ lands as UTC wall time);
- keeps `cold_flusher_checkpoint` (id = 1, last_flushed_watermark, updated_at) in the hot database, and deletes
  from the hot tables only up to min(W, the downstream consumer's checkpoint).
No commit carries this flusher's author, and the state schema does not exist yet.
"""

from __future__ import annotations

from collections import Counter

import duckdb
from psycopg import sql

from flusher.extensions import load_extensions
from flusher.lake import bronze_ddl
from flusher.quoting import quote_ident, quote_literal
from tests.helpers import LEDGER_COLUMN, HotEnv

# Columns the hot tables gained after the Go service's lake tables were created (its DDL lacks them).
GO_ERA_MISSING = {
    "ledgers_row_v2": {"soroban_op_count", "total_fee_charged", "contract_events_count"},
    "transactions_row_v2": {"rent_fee_charged", "transaction_id"},
    "contract_events_stream_v1": {
        "successful",
        "contract_event_xdr",
        "topic0_decoded",
        "topic1_decoded",
        "topic2_decoded",
        "topic3_decoded",
    },
}
# What identifies a row in the checks, for the table without a key: the ingester's own DISTINCT ON columns.
TOKEN_TRANSFER_COLUMNS = [
    "ledger_sequence",
    "transaction_hash",
    "operation_index",
    "event_type",
    "from",
    "to",
    "amount_raw",
]


def go_ddl(table: str, catalog: str, schema: str) -> str:
    """The Go-era CREATE TABLE: our Bronze DDL in the same column order, without the columns added later."""
    missing = GO_ERA_MISSING.get(table, set())
    lines = bronze_ddl()[table].splitlines()
    kept = [line for line in lines if line.strip().split(" ", 1)[0].strip('"') not in missing]
    body = "\n".join(kept).replace(",\n)", "\n)")
    return body.replace(
        f"CREATE TABLE IF NOT EXISTS {table}", f"CREATE TABLE IF NOT EXISTS {catalog}.{schema}.{table}", 1
    )


def _connect_like_go(env: HotEnv) -> tuple[duckdb.DuckDBPyConnection, str, str]:
    settings = env.settings()
    lake = settings.ducklake
    db = duckdb.connect()
    load_extensions(db, ("postgres_scanner", "ducklake"))
    db.execute("SET TimeZone = 'UTC'")  # the Go service ran in a UTC container
    catalog_path = "ducklake:postgres:" + lake.catalog_conninfo()
    db.execute(
        f"ATTACH {quote_literal(catalog_path)} AS {quote_ident(lake.catalog_name)} "
        f"(DATA_PATH {quote_literal(lake.data_path)}, METADATA_SCHEMA {quote_literal(lake.metadata_schema)})"
    )
    return db, lake.catalog_name, lake.schema_name


def go_lake(env: HotEnv, tables: list[str]) -> None:
    """Create the Go service's lake schema and tables, partitioned by ledger_range."""
    db, catalog, schema = _connect_like_go(env)
    try:
        db.execute(f"CREATE SCHEMA IF NOT EXISTS {catalog}.{schema}")
        for table in tables:
            db.execute(go_ddl(table, catalog, schema))
            db.execute(f"ALTER TABLE {catalog}.{schema}.{table} SET PARTITIONED BY (ledger_range)")
    finally:
        db.close()


def go_copy(env: HotEnv, tables: list[str], watermark: int) -> None:
    """The Go service's copy step: each table's hot rows <= watermark into the lake, one statement (commit) each."""
    db, catalog, schema = _connect_like_go(env)
    try:
        for table in tables:
            target = f"{catalog}.{schema}.{table}"
            columns = [
                r[0]
                for r in db.execute(
                    "SELECT column_name FROM duckdb_columns() "
                    "WHERE database_name = ? AND schema_name = ? AND table_name = ? "
                    "ORDER BY column_index",
                    [catalog, schema, table],
                ).fetchall()
            ]
            names = ", ".join(map(quote_ident, columns))
            db.execute(
                f"INSERT INTO {target} ({names}) SELECT {names} FROM postgres_scan({quote_literal(env.uri)}, 'public', "
                f"{quote_literal(table)}) WHERE {quote_ident(LEDGER_COLUMN[table])} <= {int(watermark)}"
            )
    finally:
        db.close()


def go_flush(env: HotEnv, tables: list[str], watermark: int, downstream: int) -> None:
    """One Go flush cycle: copy rows <= watermark into the lake, advance its checkpoint, delete <= min(W, downstream)"""
    go_copy(env, tables, watermark)
    with env.connect() as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS cold_flusher_checkpoint (id INTEGER PRIMARY KEY DEFAULT 1 CHECK (id = 1), "
            "last_flushed_watermark BIGINT NOT NULL DEFAULT 0, updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW())"
        )
        conn.execute(
            "INSERT INTO cold_flusher_checkpoint (id, last_flushed_watermark) VALUES (1, 0) ON CONFLICT (id) DO NOTHING"
        )
        conn.execute(
            "UPDATE cold_flusher_checkpoint SET last_flushed_watermark = %s, updated_at = NOW() WHERE id = 1",
            (watermark,),
        )
        for table in tables:
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE {} <= %s").format(
                    sql.Identifier(table), sql.Identifier(LEDGER_COLUMN[table])
                ),
                (min(watermark, downstream),),
            )


def identity(env: HotEnv, table: str) -> list[str]:
    """The columns a check compares rows by: the primary key, or the ingester's de-duplication columns."""
    return env.primary_key(table) or TOKEN_TRANSFER_COLUMNS


def hot_rows(env: HotEnv, table: str, schema: str = "public", at_or_below: int | None = None) -> Counter:
    cols = sql.SQL(", ").join(map(sql.Identifier, identity(env, table)))
    where = sql.SQL("")
    if at_or_below is not None:
        where = sql.SQL(" WHERE {} <= {}").format(sql.Identifier(LEDGER_COLUMN[table]), sql.Literal(at_or_below))
    return Counter(env.execute(sql.SQL("SELECT {} FROM {}").format(cols, sql.Identifier(schema, table)) + where))


def lake_rows(env: HotEnv, tables: list[str]) -> dict[str, Counter]:
    """Per table, the lake's rows by identity columns (a multiset)."""
    db, catalog, schema = _connect_like_go(env)
    try:
        return {
            t: Counter(
                db.execute(
                    f"SELECT {', '.join(map(quote_ident, identity(env, t)))} FROM {catalog}.{schema}.{t}"
                ).fetchall()
            )
            for t in tables
        }
    finally:
        db.close()


def assert_taken_over(
    env: HotEnv, tables: list[str], lake_before: dict[str, Counter], hot_before: dict[str, Counter], watermark: int
) -> None:
    """After a takeover up to `watermark`: the lake holds what it held plus exactly the hot rows it lacked.

    Multisets: lake_after = max(lake_before, hot_before) per row (a row in both counts once, two identical hot rows
    against one in the lake count twice); no key twice in the lake; nothing left in hot at or below the watermark;
    every row the ingester ever wrote (audit) is in the lake or in hot.
    """
    after = lake_rows(env, tables)
    for table in tables:
        expected = lake_before[table] | hot_before[table]
        assert after[table] == expected, (
            f"{table}: lake has {sum(after[table].values())} rows, expected {sum(expected.values())}; "
            f"extra {dict(list((after[table] - expected).items())[:3])}, "
            f"missing {dict(list((expected - after[table]).items())[:3])}"
        )
        assert not hot_rows(env, table, at_or_below=watermark), f"{table}: rows <= {watermark} left in PostgreSQL"
        if env.primary_key(table):
            dup = [k for k, n in after[table].items() if n > 1]
            assert not dup, f"{table}: {len(dup)} keys twice in the lake, e.g. {dup[0]}"
            audit = set(hot_rows(env, table, schema="audit"))
            assert audit == set(after[table]) | set(hot_rows(env, table)), f"{table}: rows lost or invented"
