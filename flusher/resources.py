"""Everything one run holds open: settings, the connection pool, state, the control session and the lake."""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, field

from psycopg_pool import ConnectionPool

from flusher.adoption import check_lake, label_owner
from flusher.config import Settings
from flusher.hot import ControlSession, make_pool, table_bytes, unconstrained_numeric_columns
from flusher.lake import HOT, Column, LakeSession
from flusher.state import StateStore
from flusher.transfer import LabelOwner


@dataclass
class RunResources:
    settings: Settings
    pool: ConnectionPool
    state: StateStore
    control: ControlSession
    lake: LakeSession | None = None
    hot_columns: dict[str, list[Column]] = field(default_factory=dict)
    lake_columns: dict[str, list[Column]] = field(default_factory=dict)
    hot_bytes: dict[str, int] = field(default_factory=dict)
    _attaching: concurrent.futures.Future[LakeSession] | None = field(default=None, init=False, repr=False)
    _owner: LabelOwner | None = field(default=None, init=False, repr=False)

    @classmethod
    def open(cls, settings: Settings) -> RunResources:
        """Connect to PostgreSQL and make sure the state tables exist (the lake is opened later, once locked)."""
        pool = make_pool(settings.postgres)
        try:
            state = StateStore(pool, settings.flush.state_schema)
            state.ensure()
            return cls(settings, pool, state, ControlSession(settings.postgres))
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

    def open_lake(self, tables: list[str]) -> LakeSession:
        """Attach the lake, create missing Bronze tables, and read both sides' columns once for the run."""
        attaching, self._attaching = self._attaching, None
        self.lake = attaching.result() if attaching is not None else self._new_lake_session()
        self.lake.ensure_tables(tables)
        schema = self.settings.postgres.schema_name
        self.hot_columns = self.lake.columns_by_table(HOT, schema)
        with self.pool.connection() as conn:
            lossy = unconstrained_numeric_columns(conn, schema, tables)
            self.hot_bytes = table_bytes(conn, schema, tables)
        for table, columns in self.hot_columns.items():  # DuckDB shows these as DOUBLE; mark them for refusal
            self.hot_columns[table] = [Column(c.name, "NUMERIC") if (table, c.name) in lossy else c for c in columns]
        self.lake_columns = self.lake.columns_by_table(self.lake.lake, self.lake.schema)
        return self.lake

    def check_lake_ownership(self) -> None:
        """Refuse (TakeoverRequired) unless this state provably owns our commits in the lake; adopt an empty lake."""
        assert self.lake is not None, "open the lake first"
        self._owner = label_owner(check_lake(self.state, self.lake))

    def label_owner(self) -> LabelOwner:
        """Whose lake commits this run labels and may undo (read once per run)."""
        if self._owner is None:
            self._owner = label_owner(self.state.identity())
        return self._owner

    def _new_lake_session(self) -> LakeSession:
        return LakeSession(self.settings, queries_at_once=self.settings.flush.concurrency)

    def largest_first(self, names: list[str]) -> list[str]:
        """Tables ordered by hot size, largest first: started first, the long copies do not end the run alone."""
        return sorted(names, key=lambda name: -self.hot_bytes.get(name, 0))

    def close(self) -> None:
        if self._attaching is not None and self._attaching.exception() is None:  # attached, then never used
            self._attaching.result().close()
        if self.lake is not None:
            self.lake.close()
        self.control.close()
        self.pool.close()

    def __enter__(self) -> RunResources:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
