"""Peer: dlt's `sql_database` source (pyarrow backend, dlt's fast path) into a DuckDB file, same hot data.

Runs in bench/.venv (dlt's own dependencies), so it imports nothing from the flusher. dlt only copies: it neither
deletes from PostgreSQL nor vacuums, so its wall time is a copy against the others' copy + delete + vacuum.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import quote

from bench.variants.common import Phases, read_spec, write_result


def sqlalchemy_url(conninfo: str) -> str:
    """A psycopg2 SQLAlchemy URL for a libpq connection string (host may be a socket folder)."""
    from psycopg2.extensions import parse_dsn

    parts = parse_dsn(conninfo)
    query = f"host={quote(parts.get('host', 'localhost'))}&port={parts.get('port', 5432)}"
    return f"postgresql+psycopg2://{quote(parts.get('user', 'postgres'))}@/{parts['dbname']}?{query}"


def main() -> None:
    spec = read_spec()
    root = Path(spec["root"]) / "dlt"
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")  # nothing may reach the internet
    os.environ.setdefault("DLT_DATA_DIR", str(root / "data"))
    import dlt
    import duckdb
    from dlt.sources.sql_database import sql_database

    tables = list(spec["tables"])
    database = root / "peer.duckdb"  # not bronze.duckdb: a catalog named like the dataset is ambiguous
    phases = Phases()
    started = time.perf_counter()
    source = sql_database(
        credentials=sqlalchemy_url(spec["hot_uri"]),
        schema="public",
        table_names=tables,
        backend="pyarrow",
        chunk_size=100_000,
    )
    pipeline = dlt.pipeline(
        pipeline_name="bench_peer",
        destination=dlt.destinations.duckdb(str(database)),
        dataset_name="bronze",
        pipelines_dir=str(root / "pipelines"),
        progress=None,
    )
    with phases.time("flush"):
        with phases.time("extract"):
            pipeline.extract(source, write_disposition="append")
        with phases.time("normalize"):
            pipeline.normalize()
        with phases.time("load"):
            pipeline.load()
    wall = time.perf_counter() - started
    with duckdb.connect(str(database), read_only=True) as con:
        counts = {t: con.execute(f'SELECT count(*) FROM bronze."{t}"').fetchone()[0] for t in tables}
    write_result(spec, wall, phases, rows=sum(counts.values()), lake_counts=counts, destination="duckdb file")


if __name__ == "__main__":
    main()
