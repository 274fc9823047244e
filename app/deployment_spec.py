"""The bronze-flush deployment as prefect.yaml declares it: the one place its schedule and parameters live."""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flusher.config import ConfigError, Settings

DEPLOYMENT = "bronze-flush"
MAINTENANCE = "bronze-maintenance"


@dataclass(frozen=True)
class DeploymentSpec:
    name: str
    entrypoint: str
    interval_seconds: int | None = None
    cron: str | None = None
    timezone: str = "UTC"
    description: str = ""
    tags: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    concurrency_limit: int = 1
    collision_strategy: str = "CANCEL_NEW"


def load_deployment(path: Path, name: str = DEPLOYMENT) -> DeploymentSpec:
    """Read and check one deployment of prefect.yaml (interval 5-60 min, parameters known to the flow)."""
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    found = [d for d in document.get("deployments") or [] if d.get("name") == name]
    if not found:
        raise ConfigError(f"{path} declares no deployment named {name!r}")
    raw = found[0]
    if not raw.get("entrypoint"):
        raise ConfigError(f"{path}: deployment {name!r} has no entrypoint (module:flow_function)")
    schedules = raw.get("schedules") or []
    if len(schedules) != 1 or not ({"interval", "cron"} & set(schedules[0])):
        raise ConfigError(f"{path}: deployment {name!r} needs exactly one interval or cron schedule")
    schedule = schedules[0]
    interval = int(schedule["interval"]) if "interval" in schedule else None
    if name == DEPLOYMENT and (interval is None or not 300 <= interval <= 3600):
        raise ConfigError(f"{path}: {name!r} must run on an interval of 5-60 minutes (300-3600 s), not {schedule}")
    limit = raw.get("concurrency_limit") or {}
    spec = DeploymentSpec(
        name=name,
        entrypoint=raw["entrypoint"],
        interval_seconds=interval,
        cron=schedule.get("cron"),
        timezone=str(schedule.get("timezone", "UTC")),
        description=" ".join(str(raw.get("description", "")).split()),
        tags=list(raw.get("tags") or []),
        parameters=dict(raw.get("parameters") or {}),
        concurrency_limit=int(limit.get("limit", 1)),
        collision_strategy=str(limit.get("collision_strategy", "CANCEL_NEW")),
    )
    _check_parameters(spec)
    return spec


def entrypoint_module(entrypoint: str) -> str:
    """The installed module an entrypoint names: flusher.flows.bronze_flush:bronze_flush as it is; a file path
    (flows/bronze_flush.py:bronze_flush) as the module the package installs it as (flusher.flows.bronze_flush).

    The folders of the checkout are installed inside the `flusher` package (pyproject.toml), so this works from any
    working directory, not only from the checkout's root.
    """
    path = entrypoint.partition(":")[0]
    if not path.endswith(".py"):
        return path
    return "flusher." + path.removesuffix(".py").replace("/", ".")


def entrypoint_flow(spec: DeploymentSpec):
    """The flow object an entrypoint like flusher.flows.bronze_flush:bronze_flush names."""
    return getattr(importlib.import_module(entrypoint_module(spec.entrypoint)), spec.entrypoint.partition(":")[2])


def _check_parameters(spec: DeploymentSpec) -> None:
    known = set(inspect.signature(entrypoint_flow(spec).fn).parameters)
    unknown = sorted(set(spec.parameters) - known)
    if unknown:
        raise ConfigError(
            f"deployment {spec.name!r} passes parameters {unknown} that the flow does not take: {sorted(known)}"
        )


def effective_interval(spec: DeploymentSpec, settings: Settings) -> int:
    """The schedule in seconds; a config that sets flush_interval_minutes must agree with prefect.yaml."""
    if "flush_interval_minutes" in settings.service.model_fields_set:
        minutes = settings.service.flush_interval_minutes
        if minutes * 60 != spec.interval_seconds:
            raise ConfigError(
                f"service.flush_interval_minutes is {minutes} but prefect.yaml schedules {spec.name!r} every "
                f"{spec.interval_seconds // 60} min; the schedule lives in prefect.yaml: change it there "
                "(or make the two agree)"
            )
    return spec.interval_seconds
