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


@dataclass(frozen=True)
class Parallelism:
    """How much runs at once in one flush run."""

    flush: int  # tables copied at once (flush.concurrency): the pool of flush task threads
    delete: int  # tables deleted (and vacuumed) at once: one per pooled PostgreSQL connection (postgres.pool_size)
    duckdb_threads: int  # DuckDB's threads, shared by the concurrent copies

    @classmethod
    def from_settings(cls, settings: Settings) -> Parallelism:
        """ducklake.threads when set; else the cores the concurrent flushes leave, plus one (config.default_threads)."""
        flush = settings.flush.concurrency
        return cls(
            flush=flush,
            delete=settings.postgres.pool_size,
            duckdb_threads=settings.ducklake.threads or default_threads(flush),
        )


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


def commit_groups(names: Iterable[str], sizes: Mapping[str, int], groups: int) -> list[list[str]]:
    """`names` split into at most `groups` groups of about equal hot size (largest first, each to the lightest
    group), each largest first; no empty group."""
    bins: list[list[str]] = [[] for _ in range(max(groups, 1))]
    totals = [0] * len(bins)
    for name in largest_first(names, sizes):
        lightest = min(range(len(bins)), key=lambda i: (totals[i], len(bins[i])))
        bins[lightest].append(name)
        totals[lightest] += sizes.get(name, 0)
    return [b for b in bins if b]


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
