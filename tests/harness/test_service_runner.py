"""`serve`'s RunnerThread (app/service.py) on Prefect's test harness: it reports ready only once the Runner serves,
and a stop during start-up (a signal before the runner serves) abandons the start instead of waiting out a timeout."""

from __future__ import annotations

import asyncio
import threading

import pytest
from prefect import flow
from prefect.runner import Runner

from flusher.app.service import RunnerThread


@flow
def _idle() -> None:
    """A flow the runner serves; the deployment has no schedule, so it never runs."""


def _runner_thread(name: str) -> RunnerThread:
    return RunnerThread([_idle.to_deployment(name=name)], name=name)


@pytest.fixture
def slow_runner_start(monkeypatch):
    """The Runner's start-up (entering its context: API client, process manager, ...) waits until released."""
    release = threading.Event()
    enter = Runner.__aenter__

    async def slow_enter(self):
        while not release.is_set():
            await asyncio.sleep(0.05)
        return await enter(self)

    monkeypatch.setattr(Runner, "__aenter__", slow_enter)
    yield release
    release.set()


def test_ready_means_serving_and_stop_ends_the_thread(slow_runner_start):
    runner = _runner_thread("runner-ready")
    threading.Timer(1.0, slow_runner_start.set).start()  # start-up takes a while, as against a busy API
    try:
        assert runner.start(threading.Event())
        assert runner.runner.started, "start() returned before the runner served: a stop now would be refused"
        assert runner.deployment_id is not None
    finally:
        runner.stop(timeout=30)
    assert not runner.thread.is_alive() and not runner.runner.started


def test_a_stop_during_start_up_abandons_it(slow_runner_start):
    runner = _runner_thread("runner-abandoned")
    stop = threading.Event()
    stop.set()  # SIGINT/SIGTERM arrived while the runner was still starting
    assert runner.start(stop) is False
    runner.stop(timeout=30)
    assert not runner.thread.is_alive(), "the start-up went on after the stop"
    slow_runner_start.set()  # had the start-up survived, it would now serve
    runner.thread.join(1)
    assert not runner.runner.started
