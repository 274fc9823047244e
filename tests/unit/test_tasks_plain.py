"""Tasks take only what they use, so they run as plain functions (`task.fn`) on stand-ins: no servers, no API."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest

from flusher.hot import Mark
from flusher.statuses import RunStatus
from flusher.tasks import watermark
from flusher.tasks.watermark import FlushLocked, mark_watermark


@pytest.fixture(autouse=True)
def _plain_logger(monkeypatch):
    monkeypatch.setattr(watermark, "get_run_logger", lambda: logging.getLogger("test"))


@dataclass
class _Control:
    hot: tuple[int | None, int | None] = (None, None)
    free: bool = True
    announced: list[str] = field(default_factory=list)

    def try_lock(self, key: str, wait: float) -> bool:
        return self.free

    def lock_holder(self, key: str):
        return type("Holder", (), {"describe": lambda self: "a flush holds the lock"})()

    def announce(self, what: str, flow_run_id: str | None) -> None:
        self.announced.append(what)

    def pin_snapshot(self) -> tuple[str, int | None, int | None]:
        return "00000003-0000001B-1", *self.hot


@dataclass
class _State:
    previous: int | None = None
    schema_name: str = "flusher"
    finished: list[tuple] = field(default_factory=list)

    def start_run(self, flow_run_id: str | None) -> int:
        return 7

    def last_watermark(self) -> int | None:
        return self.previous

    def finish_run(self, batch: int, status: RunStatus, watermark: int | None, message: str, vacuumed: bool) -> None:
        self.finished.append((batch, status, watermark, message))


def test_mark_pins_the_snapshot_and_chooses_the_watermark():
    control, state = _Control(hot=(3, 9)), _State(previous=2)
    mark = mark_watermark.fn(control, state, [], 0, max_ledgers=0, flow_run_id="run-1")
    assert mark == Mark(7, 9, "00000003-0000001B-1", 3, 9, 2)
    # Late rows below an earlier, higher watermark still move: the watermark never goes back.
    mark = mark_watermark.fn(_Control(hot=(3, 9)), _State(previous=12), [], 0, max_ledgers=0)
    assert mark.watermark == 12
    assert control.announced == ["flush"] and state.finished == []


def test_an_empty_hot_buffer_finishes_the_run_as_empty():
    state = _State()
    assert mark_watermark.fn(_Control(), state, [], 0, max_ledgers=0) is None
    assert state.finished == [(7, RunStatus.EMPTY, None, "hot buffer empty")]
    assert state.finished[0][1] == "empty"


def test_a_held_lock_raises_flush_locked_before_any_state_is_written():
    state = _State()
    with pytest.raises(FlushLocked, match="a flush holds the lock"):
        mark_watermark.fn(_Control(free=False), state, [], 0, max_ledgers=0)
    assert state.finished == []
