"""bench/variants/flusher_flow.py: its timers leave the flow callable as deployed, and time the flow's body."""

from __future__ import annotations

import flusher.flows.bronze_flush as module
from bench.variants.common import Phases
from bench.variants.flusher_flow import instrument


def test_the_instrumented_flow_still_validates_its_parameters(monkeypatch):
    flow = instrument(Phases(), monkeypatch.setattr)
    # Prefect validates every call this way; a timer in place of the flow function broke it (KnownTable unresolved).
    assert flow.validate_parameters({"tables": ["ledgers_row_v2"], "dry_run": True})["tables"] == ["ledgers_row_v2"]


def test_the_flow_body_is_timed_around_the_inner_function(monkeypatch):
    from prefect.states import Completed

    calls = []
    monkeypatch.setattr(module, "_bronze_flush", lambda *args: calls.append(args) or Completed(message="done"))
    phases = Phases()
    flow = instrument(phases, monkeypatch.setattr)
    state = flow.fn(config_path="x.yaml")
    assert state.message == "done" and len(calls) == 1
    assert set(phases.seconds) == {"flow_body"}
