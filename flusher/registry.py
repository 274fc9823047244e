"""The table registry: which hot tables are flushed, and the ledger column each is cut on (schema/tables.yaml)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

from flusher.config import ConfigError, FlushSettings

WATERMARK_TABLE = "ledgers_row_v2"
WATERMARK_COLUMN = "sequence"


@dataclass(frozen=True)
class TableSpec:
    name: str
    ledger_column: str
    group: str
    enabled: bool  # in the Go service's original 19-table list; no longer decides what is flushed
    # Columns that identify a row when a takeover compares the hot buffer with a lake another flusher filled:
    # None means the hot table's PostgreSQL primary key; () means no reliable key (compare all columns).
    natural_key: tuple[str, ...] | None = None


@cache
def registry() -> dict[str, TableSpec]:
    """Every known table, in registry order."""
    raw = yaml.safe_load(resources.files("flusher.schema").joinpath("tables.yaml").read_text())
    return {
        t["name"]: TableSpec(
            t["name"],
            t["ledger_column"],
            t["group"],
            bool(t["enabled"]),
            None if t.get("natural_key") is None else tuple(t["natural_key"]),
        )
        for t in raw["tables"]
    }


def known_table_names() -> tuple[str, ...]:
    """The registry's table names, in registry order (what `--tables` and the flow's `tables` accept)."""
    return tuple(registry())


def _unknown(names: list[str], where: str) -> ConfigError | None:
    unknown = [t for t in names if t not in registry()]
    if not unknown:
        return None
    return ConfigError(
        f"{where}: {unknown} not in the registry (schema/tables.yaml); known tables: {', '.join(known_table_names())}"
    )


def is_default_selection(flush: FlushSettings, only: list[str] | None = None) -> bool:
    """True when no one named the tables: every known table that exists in the hot buffer is flushed.

    Then a known table missing from the hot buffer is skipped (an info line); a table someone named
    (flush.tables or a run's `tables`) that is missing fails, as a typo or a dropped table should.
    """
    return flush.tables is None and not only


def skip_missing(specs: list[TableSpec], present: Collection[str], default: bool) -> tuple[list[TableSpec], list[str]]:
    """The tables to flush, and the names skipped: in the default selection (is_default_selection), known tables
    missing from the hot buffer (not in `present`) are skipped, flushed once they appear; a table someone named
    stays, and fails when missing, as it should."""
    if not default:
        return specs, []
    return [s for s in specs if s.name in present], [s.name for s in specs if s.name not in present]


def selected_tables(flush: FlushSettings, only: list[str] | None = None) -> list[TableSpec]:
    """The tables a run flushes: flush.tables (+ extra_tables), or every known table; narrowed to `only` when given."""
    known = registry()
    for names, where in (
        (flush.tables or [], "flush.tables"),
        (flush.extra_tables, "flush.extra_tables"),
        (only or [], "tables to flush"),
    ):
        error = _unknown(names, where)
        if error:
            raise error
    wanted = list(flush.tables) if flush.tables is not None else list(known)
    wanted += [t for t in flush.extra_tables if t not in wanted]
    if only:
        outside = [t for t in only if t not in wanted]
        if outside:
            raise ConfigError(
                f"tables to flush: {outside} are known but not among the configured tables (flush.tables): {wanted}"
            )
        wanted = [t for t in wanted if t in only]
    return [known[name] for name in wanted]


def unselected_tables(flush: FlushSettings) -> list[TableSpec]:
    """Known tables an explicit flush.tables list leaves out: their rows are never flushed, so they are reported."""
    chosen = {t.name for t in selected_tables(flush)}
    return [spec for name, spec in registry().items() if name not in chosen]
