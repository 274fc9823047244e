"""Concurrent ingest (C4): the ingester writes, replays and updates while flushes run; nothing is lost or doubled."""

from __future__ import annotations

import threading
import time
from collections import Counter

import psycopg
import pytest

from tests.helpers import ENABLED, flush

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


class Ingester(threading.Thread):
    """Writes batches of ledgers (all tables, one transaction), late rows for old ledgers one table at a time,
    and in-place UPDATEs of rows that may be being flushed, until stopped."""

    def __init__(self, hot, first: int) -> None:
        super().__init__(daemon=True)
        self.hot, self.next, self.stop, self.error = hot, first, threading.Event(), None
        self.batches = self.late = self.updates = 0

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.hot.load(self.next, 3)
                self.next += 3
                self.batches += 1
                if self.batches % 2 == 0:  # a history loader: one table per transaction, old ledgers, no ledger rows
                    for table in ("effects_row_v1", "contract_events_stream_v1"):
                        self.hot.load(max(1, self.next - 20), 4, tables=[table], first_row=1000 + self.batches)
                    self.late += 1
                with psycopg.connect(self.hot.uri, autocommit=True) as conn:
                    self.updates += conn.execute(
                        "UPDATE transactions_row_v2 SET memo = coalesce(memo, '') || '+' "
                        "WHERE ledger_sequence >= (SELECT max(ledger_sequence) - 6 FROM transactions_row_v2)"
                    ).rowcount
                time.sleep(0.02)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the test
            self.error = exc


def test_flushes_during_ingest_replay_and_updates_lose_and_double_nothing(hot):
    hot.load(1, 30)
    ingester = Ingester(hot, 31)
    ingester.start()
    try:
        for _ in range(4):
            state = flush(hot)
            assert state.is_completed(), state.message
    finally:
        ingester.stop.set()
        ingester.join(timeout=60)
    assert ingester.error is None, ingester.error
    assert ingester.batches >= 4 and ingester.late >= 2 and ingester.updates > 0, vars(ingester)

    for _ in range(2):  # tables whose delete met a concurrent UPDATE were left for the next run
        assert flush(hot).is_completed()
    hot.assert_exactly_once()
    for table in ENABLED:
        assert hot.hot_count_at_or_below(table, ingester.next - 1) == 0, table

    # The lake holds the latest version of every updated row, never an older one beside it.
    audit = Counter(hot.execute("SELECT transaction_hash, memo FROM audit.transactions_row_v2"))
    lake = Counter(_lake_memos(hot))
    assert audit == lake


def _lake_memos(hot) -> list[tuple]:
    from flusher.lake import LakeSession

    with LakeSession(hot.settings(), attach_hot=False) as lake:
        return (
            lake.cursor().execute(f"SELECT transaction_hash, memo FROM {lake.table('transactions_row_v2')}").fetchall()
        )
