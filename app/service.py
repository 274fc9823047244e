"""`serve`: one process that runs the bronze-flush schedule, /health and /metrics, and shuts down gracefully.

Prefect's own serve() kills in-flight runs on SIGTERM and pauses the schedule. Here the Runner lives in a
background thread and the main thread owns the signals: stop taking new runs, let the run in flight finish
(bounded), stop the runner, flush once more in-process, exit 0. A second signal exits at once; the exactly-once
protocol makes even that safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psutil
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import ConcurrencyLimitConfig, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectNotFound
from prefect.runner import Runner
from prefect.states import Crashed

from flusher.app.deployment_spec import DeploymentSpec, effective_interval, entrypoint_flow
from flusher.app.health import HealthProbe, HealthServer
from flusher.blocks.settings import CONFIG_ENV
from flusher.config import ConfigError, Settings
from flusher.flows.bronze_flush import bronze_flush
from flusher.hot import make_pool

log = logging.getLogger("postgres_ducklake_flusher.service")


class RunnerThread:
    """A Prefect Runner serving one deployment from its own event loop in a daemon thread."""

    def __init__(self, deployments: list[Any], name: str) -> None:
        self.runner = Runner(name=name, pause_on_shutdown=False)
        self.deployments = deployments
        self.deployment_id: UUID | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.main: asyncio.Task | None = None
        self.ready = threading.Event()  # set once the runner serves (or failed to start)
        self.abandon = threading.Event()  # stop() before the loop ran: never start serving
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="prefect-runner", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except asyncio.CancelledError:
            pass  # stopped during start-up
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self.error = exc
        finally:
            self.ready.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.main = asyncio.current_task()
        if self.abandon.is_set():
            return
        ids = [await self.runner.aadd_deployment(d) for d in self.deployments]
        self.deployment_id = ids[0]  # the flush: /health reports its next run
        watch = asyncio.create_task(self._set_ready_when_serving())
        try:
            await self.runner.start(webserver=False)
        finally:
            watch.cancel()

    async def _set_ready_when_serving(self) -> None:
        """Ready once the Runner has entered its context (it polls from then on), not when start() is called: until
        then astop() refuses ("not yet started") and a stop would wait for its timeout."""
        while not self.runner.started:
            await asyncio.sleep(0.05)
        self.ready.set()

    def start(self, stop: threading.Event, timeout: float = 120) -> bool:
        """Start the runner and wait until it serves; False if `stop` was set first (a signal during start-up)."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.2):
            if stop.is_set():
                return False
            if time.monotonic() > deadline:
                raise RuntimeError("the Prefect runner did not start: timed out")
        if self.error or not self.runner.started:
            raise RuntimeError(f"the Prefect runner did not start: {self.error or 'it stopped'}")
        return True

    def stop_taking_runs(self) -> None:
        """The runner's poller skips its next rounds; runs in flight go on."""
        self.runner.stopping = True
        poller = getattr(self.runner, "_scheduled_run_poller", None)
        if poller is not None:
            poller.stopping = True

    def _processes(self) -> dict[UUID, int]:
        """The runs in flight and their process ids.

        Prefect 3.8's runner keeps them in two private maps (the scheduled-run path in its process manager, the
        execute path in its own); pinned to prefect <3.9, checked by the service tests.
        """
        found = {run: entry["pid"] for run, entry in (getattr(self.runner, "_flow_run_process_map", {}) or {}).items()}
        manager = getattr(self.runner, "_process_manager", None)
        for run, handle in (getattr(manager, "_process_map", {}) or {}).items():
            if handle.pid is not None:
                found.setdefault(run, handle.pid)
        return found

    def runs_in_flight(self) -> int:
        return len(self._processes())

    def abandon_runs(self, reason: str, api_timeout: float = 10) -> list[UUID]:
        """Kill the runs in flight and mark them Crashed in the API: for an exit that cannot wait for them.

        Without this a run outlives the service: it dies mid-flush later (harmless: every kill converges), but stays
        "Running" in Prefect for ever and holds the deployment's concurrency slot.
        """
        processes = self._processes()
        for pid in processes.values():
            _kill_tree(pid)
        if processes:  # bounded: an API that does not answer must not keep the process from exiting
            marking = threading.Thread(target=_mark_crashed, args=(list(processes), reason), daemon=True)
            marking.start()
            marking.join(api_timeout)
        return list(processes)

    def stop(self, timeout: float = 60) -> None:
        """Stop serving; during start-up, abandon the start (the runner may not be started yet, so astop() would
        refuse and the thread would start serving after all)."""
        self.abandon.set()
        if self.loop is not None and self.thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self._stop(), self.loop)
            try:
                future.result(timeout)
            except Exception as exc:  # noqa: BLE001 - shutting down anyway
                log.warning("runner stop: %s", exc)
        self.thread.join(timeout)

    async def _stop(self) -> None:
        """In the runner's loop, so that `started` cannot change between the check and the stop."""
        if self.runner.started:
            await self.runner.astop()
        elif self.main is not None:
            self.main.cancel()

    def next_scheduled_run(self) -> datetime | None:
        """When the API has the deployment's next scheduled run."""
        if self.deployment_id is None:
            return None
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[self.deployment_id])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
                ),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                limit=1,
            )
        return runs[0].expected_start_time if runs else None


def _kill_tree(pid: int) -> None:
    """SIGKILL a run's process and every process under it (the engine may run in a child of the one started)."""
    try:
        top = psutil.Process(pid)
        tree = [*top.children(recursive=True), top]
    except psutil.NoSuchProcess:
        return
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            process.kill()


def _mark_crashed(flow_run_ids: list[UUID], reason: str) -> None:
    with get_client(sync_client=True) as client:
        for flow_run_id in flow_run_ids:
            try:
                client.set_flow_run_state(flow_run_id, Crashed(message=reason), force=True)
            except Exception as exc:  # noqa: BLE001 - exiting anyway; the next start converges
                log.warning("could not mark flow run %s crashed: %s", flow_run_id, exc)


def refuse_work_pool_deployments(names: list[str]) -> None:
    """ConfigError if a deployment `serve` would register already exists in a work pool.

    `serve` registers the same names; a worker of that pool would then take runs meant for this process (and fail on
    paths only this process has), and this process would take the pool's. One mode at a time (README).
    """
    in_pools = []
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                deployment = client.read_deployment_by_name(name)
            except ObjectNotFound:
                continue
            if deployment.work_pool_name:
                in_pools.append(f"{name} (work pool {deployment.work_pool_name})")
    if in_pools:
        raise ConfigError(
            f"{'deployments' if len(in_pools) > 1 else 'deployment'} {', '.join(in_pools)} "
            f"{'belong' if len(in_pools) > 1 else 'belongs'} to a work pool, whose workers would also run what serve "
            "schedules. Run one mode: keep the work pool (stop serve), or stop its workers and delete the "
            f"deployment ({'; '.join(f'prefect deployment delete {n}' for n in names)}), then serve"
        )


def build_deployment(spec: DeploymentSpec, config_path: Path, interval_seconds: int | None = None) -> Any:
    """The RunnerDeployment of a prefect.yaml deployment, pointed at this config file."""

    interval = interval_seconds or spec.interval_seconds
    schedule: dict[str, Any] = {"interval": timedelta(seconds=interval)} if interval else {"cron": spec.cron}
    return entrypoint_flow(spec).to_deployment(
        name=spec.name,
        **schedule,
        parameters={**spec.parameters, "config_path": str(config_path.resolve())},
        tags=spec.tags,
        description=spec.description,
        concurrency_limit=ConcurrencyLimitConfig(
            limit=spec.concurrency_limit, collision_strategy=spec.collision_strategy
        ),
    )


class FlusherService:
    def __init__(
        self,
        settings: Settings,
        config_path: Path,
        spec: DeploymentSpec,
        interval_override: int | None = None,
        extra: list[DeploymentSpec] = (),
    ):
        self.settings = settings
        self.config_path = config_path
        self.spec = spec
        self.extra = list(extra)  # e.g. bronze-maintenance, on its own schedule
        self.interval = interval_override or effective_interval(spec, settings)
        self.stop_requested = threading.Event()
        self.runner: RunnerThread | None = None

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.stop_requested.is_set():
            name = signal.Signals(signum).name
            log.warning("Second %s: stopping the runs in flight and exiting now (the next start converges)", name)
            if self.runner is not None:
                self.runner.abandon_runs(f"the service exited on a second {name}; the next flush converges")
            os._exit(130)
        log.info("%s received: finishing the flush in flight, then one final flush", signal.Signals(signum).name)
        self.stop_requested.set()

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT, then shut down gracefully; returns the exit code."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        # The served runs' config_path is this file: the runs (subprocesses, this environment) may read it, and, as
        # for a worker, no other file a run parameter names (flusher.blocks.settings.allowed_config_path).
        os.environ[CONFIG_ENV] = str(self.config_path.resolve())
        specs = [self.spec, *self.extra]
        refuse_work_pool_deployments([f"{entrypoint_flow(spec).name}/{spec.name}" for spec in specs])
        pool = make_pool(self.settings.postgres)
        try:
            deployments = [build_deployment(self.spec, self.config_path, self.interval)]
            deployments += [build_deployment(extra, self.config_path) for extra in self.extra]
            runner = self.runner = RunnerThread(deployments, self.settings.service.name)
            # Before the runner: a port in use is a ConfigError (exit 2) before anything is scheduled.
            health = HealthServer(
                HealthProbe(self.settings, pool, runner.next_scheduled_run, interval_seconds=self.interval),
                self.settings.service.health_host,
                self.settings.service.health_port,
            )
        except BaseException:
            pool.close()
            raise
        health.start()
        try:
            if runner.start(self.stop_requested):
                log.info(
                    "Serving %s every %ss; /health and /metrics on %s:%s",
                    self.spec.name,
                    self.interval,
                    self.settings.service.health_host,
                    health.port,
                )
            while not self.stop_requested.wait(0.5):
                pass
            return self._shutdown(runner)
        finally:
            health.stop()
            pool.close()

    def _shutdown(self, runner: RunnerThread) -> int:
        runner.stop_taking_runs()
        deadline = time.monotonic() + self.settings.service.shutdown_timeout_seconds
        while runner.runs_in_flight() and time.monotonic() < deadline:
            time.sleep(0.5)
        if runner.runs_in_flight():
            log.warning(
                "The flush in flight did not finish in %ss; stopping it (the next flush converges)",
                self.settings.service.shutdown_timeout_seconds,
            )
        runner.stop()
        log.info("Runner stopped; running the final flush")

        state = bronze_flush.with_options(flow_run_name="final-flush-on-shutdown")(
            config_path=str(self.config_path.resolve()), return_state=True
        )
        log.info("Final flush: %s: %s", state.name, state.message)
        return 0 if state.is_completed() else 1
