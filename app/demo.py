"""`demo`: synthetic Hubble data in a throw-away PostgreSQL, one real flush into a local DuckLake, and the result."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from pathlib import Path

import psycopg
import yaml
from psycopg import sql

from flusher.config import load_settings
from flusher.embedded import create_database, create_hot_schema, server_params, start_embedded_postgres
from flusher.hot import connect
from flusher.lake import LakeSession
from flusher.registry import registry
from flusher.status import render_status
from flusher.synthetic import load_synthetic


def _write_config(workdir: Path, params: dict[str, str]) -> Path:
    catalog = psycopg.conninfo.make_conninfo(
        host=params["host"], port=params["port"], user=params["user"], dbname="bronze_catalog"
    )
    config = {
        "service": {"name": "postgres-ducklake-flusher-demo", "flush_interval_minutes": 10},
        "postgres": {
            "host": params["host"],
            "port": int(params["port"]),
            "database": "stellar_hot",
            "user": params["user"],
        },
        "ducklake": {
            "catalog_path": catalog,
            "data_path": str(workdir / "lake"),
            "catalog_name": "bronze_catalog",
            "schema_name": "bronze",
            "metadata_schema": "bronze_meta",
        },
        "vacuum": {"enabled": True, "every_n_flushes": 1},
    }
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _load_hot(uri: str, ledgers: int) -> dict[str, int]:
    tables = {t.name: t.ledger_column for t in registry().values()}
    with psycopg.connect(uri, autocommit=False) as conn:
        create_hot_schema(conn)
        first = (conn.execute("SELECT coalesce(max(sequence), 1000000) FROM ledgers_row_v2").fetchone()[0]) + 1
        loaded = load_synthetic(conn, tables, first, ledgers)
        conn.commit()
    return loaded


def _lake_counts(config_path: Path) -> dict[str, int]:
    settings = load_settings(config_path)
    with LakeSession(settings, attach_hot=False) as lake:
        cur = lake.cursor()
        return {name: cur.execute(f"SELECT count(*) FROM {lake.table(name)}").fetchone()[0] for name in registry()}


def run_demo(ledgers: int = 3000, workdir: str | None = None) -> int:
    """Run the whole demo; returns the process exit code."""
    keep = workdir is not None
    root = Path(workdir or tempfile.mkdtemp(prefix="flusher-demo-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(root / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Without PREFECT_API_URL Prefect starts a temporary local server; give it time on a busy machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    if keep:
        print(f"demo folder: {root} (kept)")
    else:
        # Removed when the process exits: after Prefect's temporary server, which keeps its database in this folder,
        # has stopped (atexit runs handlers last-registered first, and Prefect registers its own later, at start).
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        print(f"demo folder: {root} (removed at exit; --workdir DIR keeps it)")
    server = start_embedded_postgres(root / "pg", keep=keep)
    try:
        params = server_params(server.get_uri())
        for name in ("stellar_hot", "bronze_catalog"):
            create_database(server.get_uri(), name)
        hot_uri = psycopg.conninfo.make_conninfo(server.get_uri(), dbname="stellar_hot")
        started = time.perf_counter()
        loaded = _load_hot(hot_uri, ledgers)
        print(
            f"loaded {sum(loaded.values())} synthetic rows ({ledgers} ledgers) into {len(loaded)} hot tables "
            f"in {time.perf_counter() - started:.1f}s"
        )
        config = _write_config(root, params)
        # Imported here, not at the top: Prefect reads PREFECT_HOME and the server settings above when it loads.
        from flusher.flows.bronze_flush import bronze_flush

        started = time.perf_counter()
        state = bronze_flush(config_path=str(config), return_state=True)
        seconds = time.perf_counter() - started
        print(_result_table(config, seconds))
        print(f"\nflow run: {state.name}: {state.message}")
        return 0 if state.is_completed() else 1
    finally:
        if not keep:
            server.cleanup()


def _run_seconds(config: Path) -> float:
    """The last run's own duration, from the state table (without Prefect's server start-up)."""
    settings = load_settings(config)
    with connect(settings.postgres) as conn:
        return conn.execute(
            sql.SQL(
                "SELECT extract(epoch FROM finished_at - started_at)::float8 FROM {}.runs "
                "ORDER BY batch_id DESC LIMIT 1"
            ).format(sql.Identifier(settings.flush.state_schema))
        ).fetchone()[0]


def _result_table(config: Path, seconds: float) -> str:
    lake = _lake_counts(config)
    status = render_status(load_settings(config))
    total = sum(lake.values())
    run = _run_seconds(config)
    lines = ["", status, "", f"{'lake table':34} {'rows in lake':>12}"]
    lines += [f"{name:34} {count:>12}" for name, count in lake.items()]
    lines.append(
        f"\n{total} rows in {len(lake)} lake tables. The flush (mark, flush, delete, vacuum) took {run:.2f}s: "
        f"{total / run:,.0f} rows/s end to end.\nThe whole flow run took {seconds:.2f}s, including "
        "Prefect's start-up (a temporary API server when PREFECT_API_URL is not set)."
    )
    return "\n".join(lines)
