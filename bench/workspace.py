"""One repetition's world: a restored hot database, an empty lake catalog and data folder, and a flusher config."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg
import yaml

from bench.dataset import Dataset, create_empty, db_uri, enabled_tables, restore
from flusher.config import load_settings
from flusher.embedded import server_params

HOT_DB = "bench_hot"
CATALOG_DB = "bench_catalog"


@dataclass(frozen=True)
class Workspace:
    root: Path
    hot_uri: str
    catalog_dsn: str
    data_path: str
    config: Path
    tables: dict[str, str]
    expected: dict[str, int]

    def spec(self, result: Path, **extra: object) -> Path:
        """Write the JSON a variant subprocess reads; returns its path."""
        path = result.with_suffix(".spec.json")
        body = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
        path.write_text(json.dumps(body | {"result": str(result)} | extra))
        return path


@dataclass(frozen=True)
class Remote:
    """Where a remote-regime run reaches the lake: the catalog at a TCP port on loopback (a proxy; None: directly),
    and the ducklake keys of an object store (data_path and aws_*)."""

    catalog_port: int | None
    ducklake: dict[str, object]


def _write_config(
    root: Path, admin_uri: str, data_path: Path, max_ledgers: int, remote: Remote | None = None, name: str = "config"
) -> Path:
    params = server_params(admin_uri)
    catalog = psycopg.conninfo.make_conninfo(
        host="127.0.0.1" if remote and remote.catalog_port else params["host"],
        port=remote.catalog_port if remote and remote.catalog_port else params["port"],
        user=params["user"],
        dbname=CATALOG_DB,
    )
    config = {
        "postgres": {"host": params["host"], "port": int(params["port"]), "database": HOT_DB, "user": params["user"]},
        "ducklake": {"catalog_path": catalog, "data_path": str(data_path), **(remote.ducklake if remote else {})},
        # Every variant vacuums after its delete, so the flusher does too (its default is every 10th run).
        "vacuum": {"enabled": True, "every_n_flushes": 1},
        # The same 19 tables every variant moves (the flusher's default, every known table, adds 2 empty ones).
        "flush": {"max_ledgers_per_run": max_ledgers, "tables": list(enabled_tables())},
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def prepare(
    admin_uri: str, dataset: Dataset, root: Path, max_ledgers: int = 0, remote: Remote | None = None
) -> Workspace:
    """Restore the hot data, start an empty lake with the Bronze tables and the flusher's state tables created.

    With `remote`, the variants reach the catalog through its port and write to its object store; the setup here
    talks to the catalog directly (no added latency for what no variant is timed on).
    """
    from flusher.hot import make_pool
    from flusher.lake import LakeSession
    from flusher.state import StateStore

    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    restore(admin_uri, dataset.template, HOT_DB)
    create_empty(admin_uri, CATALOG_DB)
    data_path = root / "lake"
    data_path.mkdir()
    setup = remote and Remote(None, remote.ducklake)
    config = _write_config(root, admin_uri, data_path, max_ledgers, setup, "setup" if remote else "config")
    settings = load_settings(config)
    # What `postgres-ducklake-flusher init` does once in production; no variant pays for it inside its timing.
    with LakeSession(settings, attach_hot=False) as lake:
        lake.ensure_tables(list(enabled_tables()))
    with make_pool(settings.postgres) as pool:
        StateStore(pool, settings.flush.state_schema).ensure()
    if remote:
        config = _write_config(root, admin_uri, data_path, max_ledgers, remote)
        settings = load_settings(config)
    settle(admin_uri)
    return Workspace(
        root,
        db_uri(admin_uri, HOT_DB),
        settings.ducklake.catalog_conninfo(),
        settings.ducklake.data_path,
        config,
        enabled_tables(),
        dataset.rows,
    )


def settle(admin_uri: str) -> None:
    """Write the restore's dirty pages out before the clock starts, so no variant pays for the previous one's I/O."""
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    os.sync()


def lake_counts(ws: Workspace) -> dict[str, int]:
    """Rows in each lake table, read back through DuckLake."""
    from flusher.lake import LakeSession

    with LakeSession(load_settings(ws.config), attach_hot=False) as lake:
        cur = lake.cursor()
        return {t: cur.execute(f"SELECT count(*) FROM {lake.table(t)}").fetchone()[0] for t in ws.tables}
