"""The table registry: which hot tables are flushed, and the ledger column each is cut on (schema/tables.yaml)."""

from __future__ import annotations

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
    enabled: bool
    # Columns that identify a row when a takeover compares the hot buffer with a lake another flusher filled:
    # None means the hot table's PostgreSQL primary key; () means no reliable key (compare all columns).
    natural_key: tuple[str, ...] | None = None


@cache
def registry() -> dict[str, TableSpec]:
    """Every known table, in registry order."""
    raw = yaml.safe_load(resources.files("schema").joinpath("tables.yaml").read_text())
    return {
        t["name"]: TableSpec(
            t["name"], t["ledger_column"], t["group"], bool(t["enabled"]),
            None if t.get("natural_key") is None else tuple(t["natural_key"]),
        )
        for t in raw["tables"]
    }


def selected_tables(flush: FlushSettings, only: list[str] | None = None) -> list[TableSpec]:
    """The tables a run flushes: config (or registry defaults), narrowed to `only` when given."""
    known = registry()
    wanted = flush.tables if flush.tables is not None else [t.name for t in known.values() if t.enabled]
    wanted = wanted + [t for t in flush.extra_tables if t not in wanted]
    if only:
        outside = sorted(set(only) - set(wanted))
        if outside:
            raise ConfigError(f"tables {outside} are not among the configured tables {wanted}")
        wanted = [t for t in wanted if t in only]
    unknown = [t for t in wanted if t not in known]
    if unknown:
        raise ConfigError(
            f"tables {unknown} are not in the registry (schema/tables.yaml); known: {sorted(known)}"
        )
    return [known[name] for name in wanted]
