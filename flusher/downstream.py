"""Downstream retention: the checkpoints of the hot buffer's other readers, which a run's watermark never passes.

Capping the watermark (not only the delete, as the Go service did) keeps exactly-once simple: nothing is flushed
that cannot be deleted in the same run, so the hot buffer and the lake never hold the same rows for long.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import psycopg
from psycopg import sql

from flusher.config import DownstreamConsumer, connection_reason
from flusher.lake import redact
from flusher.secrets import MaskedMessage


class DownstreamBlocked(MaskedMessage, RuntimeError):
    """A consumer's checkpoint could not be read or is not usable: the run must flush and delete nothing."""


@dataclass(frozen=True)
class ConsumerReading:
    """One consumer's checkpoint, or why there is none (the message never holds a password)."""

    name: str
    checkpoint: int | None
    problem: str | None = None


def checkpoint_query(consumer: DownstreamConsumer) -> sql.Composable:
    """The SQL that reads the checkpoint: the configured query, or max(column) of the table (identifiers quoted)."""
    if consumer.query is not None:
        return sql.SQL(consumer.query)  # type: ignore[arg-type] - the operator's own SQL, from the config
    table = sql.Identifier(*consumer.table.split("."))
    return sql.SQL("SELECT max({c}) FROM {t}").format(c=sql.Identifier(consumer.column), t=table)


def _as_ledger(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)) or value != int(value):
        raise TypeError(f"the checkpoint query returned {type(value).__name__} {value!r}, not an integer ledger")
    return int(value)


def read_checkpoint(consumer: DownstreamConsumer, timeout_seconds: int | None = None) -> ConsumerReading:
    """Connect (bounded by connect_timeout_seconds, or less), read the checkpoint, judge it; never raises for it."""
    name = consumer.describe()
    try:
        with psycopg.connect(consumer.conninfo(timeout_seconds), autocommit=True) as conn:
            row = conn.execute(checkpoint_query(consumer)).fetchone()
        value = _as_ledger(row[0] if row else None)
    except (psycopg.Error, OSError, TypeError) as exc:
        reason = connection_reason(exc)
        if isinstance(exc, psycopg.OperationalError):
            reason = f"unreachable: {reason}"
        return ConsumerReading(name, None, redact(f"downstream consumer {name}: {reason}", *consumer.secrets()))
    if value is None or value <= 0:
        shown = "NULL" if value is None else value
        return ConsumerReading(
            name, value, f"downstream consumer {name}: checkpoint is {shown} (it has consumed nothing yet)"
        )
    return ConsumerReading(name, value)


def read_all(consumers: list[DownstreamConsumer], timeout_seconds: int | None = None) -> list[ConsumerReading]:
    return [read_checkpoint(c, timeout_seconds) for c in consumers]


def retention_ceiling(readings: list[ConsumerReading]) -> int | None:
    """The lowest checkpoint (None with no consumers); raises DownstreamBlocked naming every unusable consumer."""
    problems = [r.problem for r in readings if r.problem]
    if problems:
        raise DownstreamBlocked("; ".join(problems) + ". Nothing was flushed or deleted; the run is skipped")
    return min((r.checkpoint for r in readings), default=None)
