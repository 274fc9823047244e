"""The statuses a run, a table batch and a report line can have, in one place.

StrEnums: a member *is* its string, so what goes to PostgreSQL (runs.status, table_batches.status), into artifacts
and onto the CLI stays exactly the text it always was ("completed", "confirmed", ...). Changing a value changes
stored data and what operators read: don't.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """runs.status: what became of one run (schema/flusher_state.sql)."""

    RUNNING = "running"  # started; a run still running when the next one takes the lock died
    COMPLETED = "completed"  # every table flushed (or had nothing to flush) and the checkpoint advanced
    FAILED = "failed"  # a table failed, the checkpoint could not advance, or the lake refused the run
    ABANDONED = "abandoned"  # the process stopped before the run finished
    EMPTY = "empty"  # the hot buffer was empty and nothing was flushed before
    DRY_RUN = "dry-run"  # counted what it would flush, moved nothing
    SKIPPED = "skipped"  # a downstream consumer blocked it


class BatchStatus(StrEnum):
    """table_batches.status: where one table's batch stands in the flush/delete protocol."""

    PENDING = "pending"  # the flush started; a lake commit may or may not exist
    COMMITTED = "committed"  # the lake commit exists; the PostgreSQL delete has not confirmed it yet
    CONFIRMED = "confirmed"  # the rows were deleted from PostgreSQL (confirmed_batches is the truth)
    FAILED = "failed"  # the flush failed; any lake commit of it is undone by the next flush
    UNDONE = "undone"  # a later flush of the table undid this batch's lake commit


# Batches whose lake commit (if any) may still have to be undone (the partial index table_batches_open).
OPEN_BATCH_STATUSES = (BatchStatus.PENDING, BatchStatus.COMMITTED, BatchStatus.FAILED)


class LineStatus(StrEnum):
    """A table's line in a run report (artifact, log, CLI)."""

    FLUSHED = "flushed"  # rows were copied (or, in a takeover, found in the lake) and deleted
    EMPTY = "empty"  # nothing at or below the watermark
    FAILED = "failed"  # the flush or the delete failed; the rows stay in PostgreSQL
    DEFERRED = "deferred"  # flushed, but the delete was left to the next run (rows changed after the read)

    @property
    def ok(self) -> bool:
        """The table is done for this watermark."""
        return self in (LineStatus.FLUSHED, LineStatus.EMPTY)
