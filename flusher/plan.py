"""The run plan: everything a flush run decides once, from the settings and what it reads once (no I/O here).

Two stages, because DuckDB must start before the run can read the columns through it:
- `Parallelism.from_settings`: how many tables flush and delete at once, and DuckDB's threads (the one place their
  default follows the flush parallelism);
- `build_run_plan`: once the lake is open, per table the columns its copy uses and its hot size, and the order the
  tables start in (largest first).
Tasks get the parts they use, never the settings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from flusher.config import Settings, default_threads
from flusher.lake import Column
from flusher.registry import TableSpec
from flusher.storage import StorageKind

# A catalog this many milliseconds away (or more) makes each table's copy wait on catalog round trips (~40 per
# table) more than on the cores. Measured at 30 ms RTT, seed size (bench/results/remote-30ms.md): 19.3 s with 8
# tables at once against 32.4 s with 2; on loopback 2 at once stays best (bench/README: 4 at once was 25% slower).
REMOTE_CATALOG_RTT_MS = 5.0
REMOTE_CATALOG_CONCURRENCY = 8


def flush_concurrency(settings: Settings, catalog_rtt_ms: float | None) -> int:
    """flush.concurrency when the configuration sets it; else one per core, or REMOTE_CATALOG_CONCURRENCY when the
    catalog's measured round trip is at least REMOTE_CATALOG_RTT_MS (None: not measured)."""
    default = settings.flush.concurrency
    if "concurrency" in settings.flush.model_fields_set or catalog_rtt_ms is None:
        return default
    return max(default, REMOTE_CATALOG_CONCURRENCY) if catalog_rtt_ms >= REMOTE_CATALOG_RTT_MS else default


@dataclass(frozen=True)
class Parallelism:
    """How much runs at once in one flush run."""

    flush: int  # tables copied at once (flush.concurrency): the pool of flush task threads
    delete: int  # tables deleted (and vacuumed) at once: one per pooled PostgreSQL connection (postgres.pool_size)
    duckdb_threads: int  # DuckDB's threads, shared by the concurrent copies
    catalog_rtt_ms: float | None = None  # the catalog round trip measured when the run opened (None: not measured)

    @classmethod
    def from_settings(cls, settings: Settings, catalog_rtt_ms: float | None = None) -> Parallelism:
        """ducklake.threads when set; else the cores the concurrent flushes leave, plus one (config.default_threads).
        The flush parallelism: flush_concurrency."""
        flush = flush_concurrency(settings, catalog_rtt_ms)
        return cls(
            flush=flush,
            delete=settings.postgres.pool_size,
            duckdb_threads=settings.ducklake.threads or default_threads(flush),
            catalog_rtt_ms=catalog_rtt_ms,
        )

    def describe(self) -> str:
        """One line for the run's log: what runs at once, and why when the catalog's distance chose it."""
        text = f"{self.flush} tables at once, {self.duckdb_threads} DuckDB thread(s)"
        if self.catalog_rtt_ms is not None:
            text += f"; catalog round trip {self.catalog_rtt_ms:.1f} ms"
        return text


@dataclass(frozen=True)
class TablePlan:
    """What one table's copy works with, read once per run."""

    hot_columns: tuple[Column, ...] | None  # None: the table is missing from the hot buffer
    lake_columns: tuple[Column, ...]  # the Bronze table's columns before this run's copy (empty: none yet)
    hot_bytes: int = 0  # the hot table's size, for the order (0: unknown)


@dataclass(frozen=True)
class RunPlan:
    parallelism: Parallelism
    storage: StorageKind
    order: tuple[str, ...]  # the tables to flush, in the order they start: largest first
    tables: Mapping[str, TablePlan]  # read-only

    def table(self, name: str) -> TablePlan:
        return self.tables[name]


def largest_first(names: Iterable[str], sizes: Mapping[str, int]) -> list[str]:
    """Tables ordered by hot size, largest first, unknown sizes last in their given order: started first, the long
    copies do not end the run alone."""
    return sorted(names, key=lambda name: -sizes.get(name, 0))


def mark_lossy(columns: list[Column], lossy: set[str]) -> tuple[Column, ...]:
    """Unconstrained NUMERIC columns show as DOUBLE through DuckDB; they are marked NUMERIC so the copy refuses them."""
    return tuple(Column(c.name, "NUMERIC") if c.name in lossy else c for c in columns)


def build_run_plan(
    parallelism: Parallelism,
    storage: StorageKind,
    specs: list[TableSpec],
    hot_columns: Mapping[str, list[Column]],
    lake_columns: Mapping[str, list[Column]],
    hot_bytes: Mapping[str, int],
    lossy: Iterable[tuple[str, str]] = (),
) -> RunPlan:
    """The plan for flushing `specs`, from what the run read once: both sides' columns, hot sizes and the
    (table, column) pairs of unconstrained NUMERIC columns."""
    lossy_by_table: dict[str, set[str]] = {}
    for table, column in lossy:
        lossy_by_table.setdefault(table, set()).add(column)
    tables = {
        spec.name: TablePlan(
            hot_columns=(
                mark_lossy(hot_columns[spec.name], lossy_by_table.get(spec.name, set()))
                if spec.name in hot_columns
                else None
            ),
            lake_columns=tuple(lake_columns.get(spec.name, ())),
            hot_bytes=hot_bytes.get(spec.name, 0),
        )
        for spec in specs
    }
    return RunPlan(parallelism, storage, tuple(largest_first(tables, hot_bytes)), MappingProxyType(tables))
