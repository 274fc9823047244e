"""The flow and its run-level helpers against Prefect's test harness, without PostgreSQL: parameter validation, the
bounded task pool, the delete subflow's heartbeat settings, a run whose hot buffer is unreachable."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import yaml
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.context import get_settings_context
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from flusher.flows.bronze_flush import bronze_flush
from flusher.flows.parallel import outcome, run_bounded, settings_without_heartbeats

SECRET = "HarnessPwA7f3q9"


@pytest.mark.parametrize(
    "parameters, refused",
    [
        ({"tables": ["trades_row_v9"]}, "tables.0: Input should be 'ledgers_row_v2'"),
        ({"max_ledgers_per_run": "many"}, "max_ledgers_per_run"),
    ],
)
def test_a_flow_call_with_a_bad_parameter_fails_before_the_flow_body_runs(tmp_path, parameters, refused):
    missing = tmp_path / "never-read.yaml"
    state = bronze_flush(config_path=str(missing), return_state=True, **parameters)
    assert state.is_failed(), state
    assert "Validation of flow parameters failed" in state.message and refused in state.message, state.message
    assert str(missing) not in state.message, "the body never ran, so the config was never looked for"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_run_with_an_unreachable_hot_buffer_fails_naming_it_never_the_password(tmp_path: Path):
    port = _closed_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "postgres": {"host": "127.0.0.1", "port": port, "database": "hot", "password": SECRET},
                "ducklake": {"catalog_path": "host=127.0.0.1 dbname=c", "data_path": str(tmp_path / "lake")},
            }
        )
    )
    state = bronze_flush(config_path=str(config), return_state=True)
    assert state.is_failed(), state
    assert f"cannot connect to PostgreSQL postgres@127.0.0.1:{port}/hot" in state.message, state.message
    assert SECRET not in state.message


@task(cache_policy=NO_CACHE, persist_result=False)
def _trivial(key: str, seconds: float, running: list[int], lock: threading.Lock) -> str:
    with lock:
        running.append(running[-1] + 1 if running else 1)
    time.sleep(seconds)
    with lock:
        running.append(running[-1] - 1)
    return key.upper()


@pytest.mark.parametrize("limit", [1, 3])
def test_run_bounded_runs_every_key_at_most_limit_at_a_time_and_reports_progress(limit):
    running: list[int] = []
    heard: list[int] = []
    lock = threading.Lock()

    @flow(persist_result=False)
    def bounded() -> dict[str, str]:
        keys = [f"t{i}" for i in range(7)]
        params = {k: {"key": k, "seconds": 0.2, "running": running, "lock": lock} for k in keys}
        futures = run_bounded(_trivial, params, limit, heard.append)
        assert list(futures) == keys, "every key, in the order given"
        return {k: f.result() for k, f in futures.items()}

    assert bounded() == {f"t{i}": f"T{i}" for i in range(7)}
    assert max(running) == limit, f"at most {limit} at a time, and the pool was used: {running}"
    assert heard == list(range(8)), "0 once all are submitted, then 1..n as each finishes"


def test_run_bounded_hands_back_a_failed_task_as_its_future():
    @task(cache_policy=NO_CACHE, persist_result=False)
    def fails_on_b(key: str) -> str:
        if key == "b":
            raise RuntimeError("b broke")
        return key

    @flow(persist_result=False)
    def bounded() -> dict[str, tuple]:
        futures = run_bounded(fails_on_b, {k: {"key": k} for k in "abc"}, 2)
        return {k: outcome(f) for k, f in futures.items()}  # as the flow reads them

    assert bounded() == {"a": ("a", None), "b": (None, "b broke"), "c": ("c", None)}


def test_the_delete_subflow_settings_turn_heartbeats_off_and_keep_everything_else():
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 30}):
        before = get_settings_context()
        assert before.settings.flows.heartbeat_frequency == 30
        with settings_without_heartbeats():
            inside = get_settings_context()
            assert inside.settings.flows.heartbeat_frequency is None
            assert inside.settings.api.url == before.settings.api.url and inside.profile == before.profile
            assert inside.settings.model_dump(exclude={"flows"}) == before.settings.model_dump(exclude={"flows"})
        assert get_settings_context().settings.flows.heartbeat_frequency == 30, "only inside the context"
