"""Test helpers: a hot-buffer database, loading synthetic ledgers, running flushes, and the exactly-once check."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg import sql

from flusher.config import Settings, load_settings
from flusher.registry import registry

ROOT = Path(__file__).resolve().parent.parent
ENABLED = [t.name for t in registry().values() if t.enabled]
LEDGER_COLUMN = {t.name: t.ledger_column for t in registry().values()}
# Few rows per ledger keeps the suite fast; the mix still gives several rows per ledger in the big tables.
TEST_ROWS_PER_LEDGER = {
    "transactions_row_v2": 2,
    "operations_row_v2": 3,
    "effects_row_v1": 3,
    "contract_events_stream_v1": 2,
}


@dataclass
class HotEnv:
    uri: str
    database: str
    params: dict[str, str]
    tmp: Path
    config: Path | None = None

    def settings(self) -> Settings:
        return load_settings(self.config)

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.uri, autocommit=True)

    def execute(self, query: str | sql.Composable, params: tuple = ()) -> list[tuple]:
        with self.connect() as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def install_audit(self, tables: list[str] | None = None) -> None:
        """Triggers that copy every row version written to each hot table into audit.<table>."""
        with self.connect() as conn:
            conn.execute((ROOT / "tests" / "audit.sql").read_text())
            for table in tables or list(registry()):
                t = sql.Identifier(table)
                conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS audit.{t} (LIKE public.{t})").format(t=t))
                conn.execute(
                    sql.SQL(
                        "CREATE OR REPLACE TRIGGER audit_row AFTER INSERT OR UPDATE ON public.{t} "
                        "FOR EACH ROW EXECUTE FUNCTION audit.record()"
                    ).format(t=t)
                )

    def load(
        self,
        first: int,
        n: int,
        tables: list[str] | None = None,
        first_row: int = 0,
        rows: dict[str, int] | None = None,
    ) -> dict[str, int]:
        """Write n ledgers from `first` into the tables in one transaction, as the ingester does."""
        from flusher.synthetic import load_synthetic

        names = tables or ENABLED
        with psycopg.connect(self.uri) as conn:
            loaded = load_synthetic(
                conn, {t: LEDGER_COLUMN[t] for t in names}, first, n, rows or TEST_ROWS_PER_LEDGER, first_row=first_row
            )
            conn.commit()
        return loaded

    def primary_key(self, table: str) -> list[str]:
        rows = self.execute(
            "SELECT a.attname FROM pg_index i "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)",
            (f"public.{table}",),
        )
        return [r[0] for r in rows]

    def keys(self, schema: str, table: str) -> Counter:
        cols = sql.SQL(", ").join(map(sql.Identifier, self.primary_key(table)))
        rows = self.execute(sql.SQL("SELECT {} FROM {}").format(cols, sql.Identifier(schema, table)))
        return Counter(rows)

    def lake_keys(self, tables: list[str]) -> dict[str, Counter]:
        from flusher.lake import LakeSession
        from flusher.quoting import quote_ident

        keys = {t: self.primary_key(t) for t in tables}
        with LakeSession(self.settings(), attach_hot=False) as lake:
            cur = lake.cursor()
            existing = set(lake.columns_by_table(lake.lake, lake.schema))
            return {
                t: Counter(
                    cur.execute(f"SELECT {', '.join(map(quote_ident, keys[t]))} FROM {lake.table(t)}").fetchall()
                )
                if t in existing
                else Counter()
                for t in tables
            }

    def hot_count_at_or_below(self, table: str, watermark: int) -> int:
        return self.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE {} <= %s").format(
                sql.Identifier(table), sql.Identifier(LEDGER_COLUMN[table])
            ),
            (watermark,),
        )[0][0]

    def assert_exactly_once(self, tables: list[str] | None = None, unconfirmed_ok: bool = False) -> dict[str, int]:
        """Every row ever written is in hot ∪ lake exactly once: none lost, none duplicated, none in both.

        unconfirmed_ok: right after a crash, rows of a lake commit whose delete never ran are in both places
        (the next run undoes that commit); then only loss and lake duplicates are checked.
        """
        tables = tables or ENABLED
        lake = self.lake_keys(tables)
        summary = {}
        for table in tables:
            audit, hot = self.keys("audit", table), self.keys("public", table)
            both = hot & lake[table]
            duplicated = {k: n for k, n in lake[table].items() if n > 1}
            lost = audit - (hot | lake[table])
            extra = (hot | lake[table]) - audit if unconfirmed_ok else (hot + lake[table]) - audit
            assert unconfirmed_ok or not both, (
                f"{table}: {len(both)} rows are in both hot and lake, e.g. {next(iter(both))}"
            )
            assert not duplicated, f"{table}: {len(duplicated)} rows are in the lake more than once"
            assert not lost, f"{table}: {sum(lost.values())} rows lost, e.g. {next(iter(lost))}"
            assert not extra, f"{table}: {sum(extra.values())} unexpected rows"
            summary[table] = sum(lake[table].values())
        return summary

    def run_cli(
        self,
        *args: str,
        failpoints: str | None = None,
        timeout: float = 240,
        config: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        """Run the console command in a child process (so a failpoint can SIGKILL it)."""
        child_env = {**os.environ, **(env or {})}
        child_env.pop("FLUSHER_FAILPOINTS", None)
        if failpoints:
            child_env["FLUSHER_FAILPOINTS"] = failpoints
        argv = [sys.executable, "-m", "flusher.app.cli", *args] + (["--config", str(self.config)] if config else [])
        return subprocess.run(argv, env=child_env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@dataclass(frozen=True)
class S3Env:
    """The session's moto S3 server: endpoint host:port, a bucket and a key that may use it."""

    endpoint: str
    bucket: str
    key_id: str
    secret: str

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=f"http://{self.endpoint}",
            region_name="us-east-1",
            aws_access_key_id=self.key_id,
            aws_secret_access_key=self.secret,
        )

    def ducklake(self, prefix: str, **overrides: Any) -> dict[str, Any]:
        """The `ducklake` keys for a data path s3://bucket/prefix/ on this server (path style, no TLS)."""
        return {
            "data_path": f"s3://{self.bucket}/{prefix}/",
            "aws_access_key_id": self.key_id,
            "aws_secret_access_key": self.secret,
            "aws_region": "us-east-1",
            "aws_endpoint": self.endpoint,
            "aws_url_style": "path",
            "aws_use_ssl": False,
            **overrides,
        }

    def keys(self, prefix: str) -> list[str]:
        """Object keys under s3://bucket/prefix/."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{prefix}/")
        return [o["Key"] for page in pages for o in page.get("Contents", [])]


def write_config(env: HotEnv, **sections: dict[str, Any]) -> Path:
    """A config for env's database: the catalog in the same database, the lake under env.tmp."""
    params = env.params
    base: dict[str, Any] = {
        "service": {"name": "flusher-test"},
        "postgres": {
            "host": params["host"],
            "port": int(params["port"]),
            "user": params["user"],
            "database": env.database,
        },
        "ducklake": {
            "catalog_path": psycopg.conninfo.make_conninfo(
                host=params["host"], port=params["port"], user=params["user"], dbname=env.database
            ),
            "data_path": str(env.tmp / "lake"),
        },
        "vacuum": {"enabled": True, "every_n_flushes": 2},
        "flush": {"retries": 1, "retry_delay_seconds": 0},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            base.setdefault(section, {}).update(values)
        else:  # a list section (downstream)
            base[section] = values
    path = env.tmp / "config.yaml"
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return path


def delete_automations() -> None:
    """Remove the automations `alerts` installs (automations/*.yaml), so later tests' runs page no one."""
    from prefect.automations import Automation

    for path in sorted((ROOT / "automations").glob("*.yaml")):
        with contextlib.suppress(ValueError):
            Automation.read(name=yaml.safe_load(path.read_text())["name"]).delete()


def wait_for_flusher_lock(env: HotEnv, timeout: float = 120) -> None:
    """Wait until some process holds the flusher's advisory lock (a flush or maintenance that a test paused)."""
    import time

    from flusher.hot import lock_key

    deadline = time.monotonic() + timeout
    with env.connect() as conn:
        while time.monotonic() < deadline:
            held = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND ((classid::bigint << 32) | objid::bigint) = hashtextextended(%s, 0)",
                (lock_key("flusher_state"),),
            ).fetchone()[0]
            if held:
                return
            time.sleep(0.1)
    raise AssertionError("no process took the flusher lock")


def flush(env: HotEnv, **params: Any):
    """One in-process flow run against the session's Prefect API; returns the final state."""
    from flusher.flows.bronze_flush import bronze_flush

    return bronze_flush(config_path=str(env.config), return_state=True, **params)


def task_attempts(state, table: str) -> int:
    """How many times the flow run's flush task for `table` ran (Prefect's run_count: 1 + retries taken)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    return next(run.run_count for run in runs if run.name == f"flush-{table}")
