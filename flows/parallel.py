"""How the flush flow runs work side by side: a bounded pool of task threads, outcomes per key, no extra heartbeats.

The run's parallelism comes from its plan (flusher/plan.py); nothing here has a default of its own.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any, TypeVar

from prefect import Task
from prefect.context import SettingsContext, get_settings_context
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner

Key = TypeVar("Key")


def run_bounded(
    task: Task[..., Any],
    parameters: dict[Key, dict[str, Any]],
    limit: int,
    progress: Callable[[int], None] = lambda done: None,
) -> dict[Key, PrefectFuture]:
    """Run `task` once per key, at most `limit` at a time, in the order given; return every key's finished future.

    Everything is submitted at once to a pool of `limit` threads, so a finished task's thread takes the next one
    without a round trip through this thread. `progress` hears 0 once all are submitted (it may make API calls
    while the tasks run), then the number finished as each one finishes.
    """
    with ThreadPoolTaskRunner(max_workers=limit) as runner:
        futures = {key: runner.submit(task, params) for key, params in parameters.items()}
        progress(0)
        # concurrent.futures, not prefect.futures.wait: with a timeout, Prefect's arms SIGALRM in the main thread,
        # and the alarm once fired inside a lock's release and failed the run.
        finished = concurrent.futures.as_completed(future.wrapped_future for future in futures.values())
        for done, _ in enumerate(finished, start=1):
            progress(done)
    return futures


def outcome(future: PrefectFuture | concurrent.futures.Future) -> tuple[Any, str | None]:
    """A future's result once it has finished, or None and the error message."""
    try:
        return future.result(), None
    except BaseException as exc:  # noqa: BLE001 - any task failure is reported by table
        return None, str(exc) or type(exc).__name__


def settings_without_heartbeats() -> SettingsContext:
    """The current Prefect settings with flow-run heartbeats off, as a context to enter.

    A plain copy: `temporary_settings` re-validates every setting from its sources, which took ~90 ms.
    """
    current = get_settings_context()
    flows = current.settings.flows.model_copy(update={"heartbeat_frequency": None})
    return SettingsContext(profile=current.profile, settings=current.settings.model_copy(update={"flows": flows}))
