"""What one run holds open (the connection pool, state, the control session, the lake), opened and closed in one place.

The run's tasks never take this: they get the pieces they use and the run plan (flusher/plan.py).
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, field

from psycopg_pool import ConnectionPool

from flusher.config import Settings
from flusher.hot import ControlSession, make_pool, table_bytes, unconstrained_numeric_columns
from flusher.lake import HOT, LakeSession
from flusher.plan import Parallelism, RunPlan, build_run_plan
from flusher.registry import TableSpec
from flusher.state import StateStore


@dataclass
class RunResources:
    settings: Settings
    pool: ConnectionPool
    state: StateStore
    control: ControlSession
    parallelism: Parallelism
    _lake: LakeSession | None = field(default=None, init=False, repr=False)
    _attaching: concurrent.futures.Future[LakeSession] | None = field(default=None, init=False, repr=False)

    @classmethod
    def open(cls, settings: Settings) -> RunResources:
        """Connect to PostgreSQL and make sure the state tables exist (the lake is opened later, once locked)."""
        pool = make_pool(settings.postgres)
        try:
            state = StateStore(pool, settings.flush.state_schema)
            state.ensure()
            return cls(settings, pool, state, ControlSession(settings.postgres), Parallelism.from_settings(settings))
        except BaseException:
            pool.close()
            raise

    def start_attaching_lake(self) -> None:
        """Begin loading DuckDB's extensions and attaching the lake in a thread (~0.3 s), while the run marks.

        Attaching reads the catalog (it writes only to set up a brand-new one, which `init` has normally done);
        everything that changes the lake waits for open_lake, under the lock.
        """
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="attach-lake")
        self._attaching = pool.submit(self._new_lake_session)
        pool.shutdown(wait=False)  # its one thread ends with the attach

    def open_lake(self, specs: list[TableSpec]) -> tuple[LakeSession, RunPlan]:
        """Attach the lake, create missing Bronze tables, read both sides' columns and the hot sizes once, and plan."""
        attaching, self._attaching = self._attaching, None
        lake = self._lake = attaching.result() if attaching is not None else self._new_lake_session()
        tables = [s.name for s in specs]
        lake_columns = lake.prepare_tables(tables)
        schema = self.settings.postgres.schema_name
        hot_columns = lake.columns_by_table(HOT, schema)
        with self.pool.connection() as conn:
            lossy = unconstrained_numeric_columns(conn, schema, tables)  # DuckDB shows these as DOUBLE
            hot_bytes = table_bytes(conn, schema, tables)
        plan = build_run_plan(
            self.parallelism, self.settings.ducklake.storage, specs, hot_columns, lake_columns, hot_bytes, lossy
        )
        return lake, plan

    def _new_lake_session(self) -> LakeSession:
        return LakeSession(self.settings, threads=self.parallelism.duckdb_threads)

    def close(self) -> None:
        if self._attaching is not None and self._attaching.exception() is None:  # attached, then never used
            self._attaching.result().close()
        if self._lake is not None:
            self._lake.close()
        self.control.close()
        self.pool.close()

    def __enter__(self) -> RunResources:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
