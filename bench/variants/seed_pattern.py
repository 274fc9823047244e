"""Seed pattern: the Go service's algorithm as bare SQL.

MAX(sequence); then per table, one after the other: `INSERT INTO lake.t SELECT … FROM postgres_scan(dsn, schema, t)
WHERE ledger <= W` (its own lake commit), then `DELETE … WHERE ledger <= W` in PostgreSQL; then VACUUM ANALYZE of
every table. Columns are matched by name (the seed's positional SELECT * put values in the wrong columns on this
schema); everything else is as the seed did it.
"""

from __future__ import annotations

import duckdb
import psycopg
from psycopg import sql

from bench.variants.common import WATERMARK_SQL, BareSqlRun
from flusher.lake import Column, LakeSession
from flusher.quoting import quote_ident, quote_literal
from flusher.transfer import plan_columns


def main() -> None:
    run = BareSqlRun.begin()
    spec, settings, tables, phases = run.spec, run.settings, run.tables, run.phases
    with phases.time("watermark"):
        pg = psycopg.connect(spec["hot_uri"], autocommit=True)
        mark = pg.execute(WATERMARK_SQL).fetchone()[0]
    with phases.time("flush"):
        session = LakeSession(settings, attach_hot=False)
        lake_columns = session.columns_by_table(session.lake, session.schema)
    dsn = quote_literal(settings.postgres.conninfo())
    rows = deleted = 0
    cur = session.cursor()
    for table, column in tables.items():
        with phases.time("flush"):
            scan = f"postgres_scan({dsn}, 'public', {quote_literal(table)})"
            plan = plan_columns(table, _scan_columns(cur, scan), lake_columns[table])
            rows += cur.execute(
                f"INSERT INTO {session.table(table)} BY NAME SELECT {', '.join(plan.select)} FROM {scan} "
                f"WHERE {quote_ident(column)} <= ?",
                [mark],
            ).fetchone()[0]
        with phases.time("delete"):
            deleted += pg.execute(
                sql.SQL("DELETE FROM {} WHERE {} <= %s").format(
                    sql.Identifier("public", table), sql.Identifier(column)
                ),
                (mark,),
            ).rowcount
    session.close()
    with phases.time("vacuum"):
        for table in tables:
            pg.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier("public", table)))
    pg.close()
    run.finish(rows=rows, deleted=deleted)


def _scan_columns(cur: duckdb.DuckDBPyConnection, scan: str) -> list[Column]:
    """The scan's columns as DuckDB types (DESCRIBE), as the Go service's SELECT * saw them."""
    return [Column(name, type_) for name, type_, *_ in cur.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()]


if __name__ == "__main__":
    main()
