"""This flusher: the real Prefect flow `bronze_flush`, end to end, against the Prefect API in PREFECT_API_URL.

Phase wall times come from thin timers around the flow's own steps (patched onto the module before the call), so
the flow itself runs unchanged: watermark = the mark task; flush = attaching the lake plus all table flush tasks;
delete = the work inside the delete subflow; vacuum = the vacuum task; the rest of the flow's wall time is Prefect
and bookkeeping (flow and subflow runs, state rows, the report artifacts); flow_engine = the part outside the flow
function's body (Prefect creating, starting and finishing the flow run).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import psycopg

from bench.variants.common import Phases, read_spec, write_result


def _timed(phases: Phases, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with phases.time(name):
            return fn(*args, **kwargs)

    return wrapper


def instrument(phases: Phases, patch: Callable[[object, str, Any], None] = setattr) -> Callable[..., Any]:
    """Wrap the flow's steps in timers (`patch`: how an attribute is replaced); returns the flow.

    The flow body is timed around `_bronze_flush`, which the flow function calls by name, not by replacing
    `bronze_flush.fn`: Prefect validates the parameters against that function's annotations, resolved in its module
    (`KnownTable`), so a wrapper from this module would make every call fail validation.
    """
    import flusher.flows.bronze_flush as module
    from flusher.resources import RunResources

    def wrap(owner: object, name: str, phase: str) -> None:
        patch(owner, name, _timed(phases, phase, getattr(owner, name)))

    wrap(module, "mark_watermark", "watermark")
    wrap(RunResources, "open_lake", "flush")
    wrap(module, "_flush_all", "flush")
    wrap(module.delete_flushed_rows, "fn", "delete")  # a subflow: its own parameters are not validated
    wrap(module, "delete_flushed_rows", "delete_subflow")
    wrap(module, "vacuum_tables", "vacuum")
    wrap(module, "publish_report", "report")
    wrap(module, "_bronze_flush", "flow_body")
    return module.bronze_flush


def _ledgers_left(hot_uri: str) -> int:
    with psycopg.connect(hot_uri, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM public.ledgers_row_v2").fetchone()[0]


def main() -> None:
    spec = read_spec()
    imported = time.perf_counter()
    phases = Phases()
    bronze_flush = instrument(phases)
    startup = time.perf_counter() - imported
    runs, messages = 0, []
    started = time.perf_counter()
    while True:
        state = bronze_flush(config_path=spec["config"], return_state=True)
        runs += 1
        messages.append(state.message)
        if not state.is_completed():
            raise SystemExit(f"flow run {runs} ended {state.name}: {state.message}")
        # One run normally; a catch-up with a ledger cap repeats until the backlog is gone.
        if not spec.get("until_empty") or _ledgers_left(spec["hot_uri"]) == 0:
            break
    wall = time.perf_counter() - started
    work = sum(v for k, v in phases.seconds.items() if k in ("watermark", "flush", "delete", "vacuum"))
    phases.seconds["overhead"] = wall - work
    # Prefect's own part of that: creating and finishing the flow run(s) around the flow function's body.
    phases.seconds["flow_engine"] = wall - phases.seconds["flow_body"]
    write_result(spec, wall, phases, runs=runs, messages=messages[-3:], import_seconds=startup)


if __name__ == "__main__":
    main()
