"""Ceiling: the same work as bare SQL, no Prefect and no bookkeeping.

MAX(sequence); one DuckDB transaction inserting every table's rows from the attached PostgreSQL into DuckLake (same
session settings and same by-name column expressions as the flusher); DELETE and VACUUM ANALYZE per table on two
PostgreSQL connections at once (one per core).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg
from psycopg import sql

from bench.variants.common import WATERMARK_SQL, BareSqlRun
from flusher.lake import HOT, LakeSession
from flusher.quoting import quote_ident
from flusher.transfer import plan_columns

WORKERS = 2


def watermark(hot_uri: str) -> int:
    with psycopg.connect(hot_uri, autocommit=True) as conn:
        return conn.execute(WATERMARK_SQL).fetchone()[0]


def copy_all(session: LakeSession, tables: dict[str, str], mark: int) -> int:
    """Every table in one lake transaction; returns rows inserted."""
    hot = session.columns_by_table(HOT, "public")
    lake = session.columns_by_table(session.lake, session.schema)
    cur = session.cursor()
    cur.execute("BEGIN")
    rows = 0
    for table, column in tables.items():
        plan = plan_columns(table, hot[table], lake[table])
        rows += cur.execute(
            f"INSERT INTO {session.table(table)} BY NAME SELECT {', '.join(plan.select)} "
            f"FROM {session.hot_table(table)} WHERE {quote_ident(column)} <= ?",
            [mark],
        ).fetchone()[0]
    cur.execute("COMMIT")
    return rows


def on_each_table(hot_uri: str, tables: dict[str, str], statement) -> list[int]:
    """Run statement(table, column) per table on WORKERS autocommit connections; returns rowcounts."""

    def run(item: tuple[str, str]) -> int:
        with psycopg.connect(hot_uri, autocommit=True) as conn:
            return conn.execute(statement(*item)).rowcount

    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(run, tables.items()))


def main() -> None:
    run = BareSqlRun.begin()
    spec, settings, tables, phases = run.spec, run.settings, run.tables, run.phases
    with phases.time("watermark"):
        mark = watermark(spec["hot_uri"])
    with phases.time("flush"), LakeSession(settings) as session:
        rows = copy_all(session, tables, mark)
    with phases.time("delete"):
        deleted = sum(
            on_each_table(
                spec["hot_uri"],
                tables,
                lambda t, c: sql.SQL("DELETE FROM {} WHERE {} <= {}").format(
                    sql.Identifier("public", t), sql.Identifier(c), sql.Literal(mark)
                ),
            )
        )
    with phases.time("vacuum"):
        on_each_table(
            spec["hot_uri"], tables, lambda t, c: sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier("public", t))
        )
    run.finish(rows=rows, deleted=deleted)


if __name__ == "__main__":
    main()
