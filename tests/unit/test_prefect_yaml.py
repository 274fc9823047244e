"""prefect.yaml, checked as `prefect deploy` parses it (Prefect's own models) and as `serve`/`alerts` read it
(flusher.app.deployment_spec); mutation cases prove each check catches its kind of mistake.

Registering the deployment with an API is tests/harness' job, running it tests/server's.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.cli.deploy._models import DeploymentConfig, PrefectYamlModel, RawScheduleConfig
from prefect.cli.deploy._schedules import _schedule_config_to_deployment_schedule
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.objects import ConcurrencyLimitConfig
from prefect.utilities.schema_tools import validate

from flusher.app.deployment_spec import (
    DEPLOYMENT,
    MAINTENANCE,
    effective_interval,
    entrypoint_flow,
    load_deployment,
)
from flusher.config import ConfigError, settings_from_mapping
from tests.helpers import ROOT

PREFECT_YAML = ROOT / "prefect.yaml"
TOP_LEVEL = {"name", "prefect-version", "build", "push", "pull", "deployments"}


def check_prefect_yaml(path: Path) -> None:
    """Raise unless every deployment in `path` is one `prefect deploy` and `serve` both accept as meant."""
    document = yaml.safe_load(path.read_text())
    if set(document) - TOP_LEVEL:
        raise ValueError(f"keys prefect deploy ignores: {sorted(set(document) - TOP_LEVEL)}")
    PrefectYamlModel.model_validate(document)
    _check_pull_steps(document.get("pull"))
    for raw in document["deployments"]:
        env = ((raw.get("work_pool") or {}).get("job_variables") or {}).get("env") or {}
        if "FLUSHER_CONFIG" in env:  # `{{ $FLUSHER_CONFIG }}` is resolved when deploying: '' where it is unset
            raise ValueError(f"deployment {raw.get('name')!r} stores FLUSHER_CONFIG, overriding the worker's own")
        ignored = set(raw) - set(DeploymentConfig.model_fields)  # Prefect drops unknown keys without a word
        if ignored:
            raise ValueError(f"deployment {raw.get('name')!r}: keys prefect deploy ignores: {sorted(ignored)}")
        for schedule in raw.get("schedules") or []:
            RawScheduleConfig.model_validate(schedule)  # no unknown key, exactly one of cron/interval/rrule
            DeploymentScheduleCreate.model_validate(_schedule_config_to_deployment_schedule(schedule))
        ConcurrencyLimitConfig.model_validate(raw.get("concurrency_limit") or {"limit": 1})
        if raw.get("enforce_parameter_schema") is False:
            raise ValueError(f"deployment {raw['name']!r}: the API must check parameters (enforce_parameter_schema)")
        spec = load_deployment(path, raw["name"])  # interval 5-60 min, entrypoint, parameters the flow takes
        validate(spec.parameters, entrypoint_flow(spec).parameters.model_dump(), raise_on_error=True)


def _check_pull_steps(steps: list[dict[str, Any]] | None) -> None:
    """A worker must run the deployment from wherever it starts: no folder of the deploying machine in it."""
    if not steps:
        raise ValueError("no pull step: prefect deploy would store its own working directory in the deployment")
    for step in steps:
        for name, arguments in step.items():
            folder = (arguments or {}).get("directory")
            if folder is not None and Path(str(folder)).is_absolute():
                raise ValueError(f"pull step {name} bakes the folder {folder} into the deployment")


def test_prefect_yaml_is_valid():
    check_prefect_yaml(PREFECT_YAML)


def test_the_docker_variant_is_valid_and_schedules_the_same_deployments():
    docker = ROOT / "prefect.docker.yaml"
    check_prefect_yaml(docker)
    same = ("entrypoint", "schedules", "parameters", "concurrency_limit", "tags", "description")
    for ours, theirs in zip(
        yaml.safe_load(PREFECT_YAML.read_text())["deployments"],
        yaml.safe_load(docker.read_text())["deployments"],
        strict=True,
    ):
        assert ours["name"] == theirs["name"]
        assert {k: ours.get(k) for k in same} == {k: theirs.get(k) for k in same}, ours["name"]
        assert theirs["work_pool"]["job_variables"]["image"].startswith("postgres-ducklake-flusher")


def test_prefect_yaml_declares_the_flush_and_maintenance_deployments():
    spec = load_deployment(PREFECT_YAML)
    assert entrypoint_flow(spec).name == "bronze-flush"
    assert 300 <= spec.interval_seconds <= 3600 and spec.interval_seconds == 600
    assert spec.concurrency_limit == 1 and spec.collision_strategy == "CANCEL_NEW"
    assert "bronze" in spec.tags
    maintenance = load_deployment(PREFECT_YAML, MAINTENANCE)
    assert entrypoint_flow(maintenance).name == "bronze-maintenance"
    assert maintenance.cron and maintenance.interval_seconds is None


def _deployment(document: dict[str, Any], name: str) -> dict[str, Any]:
    return next(d for d in document["deployments"] if d["name"] == name)


def _flush_schedule(doc):
    return _deployment(doc, DEPLOYMENT)["schedules"][0]


MUTATIONS = {
    "a wrong deployment key": (lambda d: _deployment(d, DEPLOYMENT).update(concurency_limit=1), "concurency_limit"),
    "a wrong top-level key": (lambda d: d.update(deployment=[]), "deployment"),
    "a wrong schedule key": (lambda d: _flush_schedule(d).update(intervall=600), "intervall"),
    "an interval under 5 min": (lambda d: _flush_schedule(d).update(interval=240), "5-60 minutes"),
    "an interval over 60 min": (lambda d: _flush_schedule(d).update(interval=3660), "5-60 minutes"),
    "an interval that is no duration": (lambda d: _flush_schedule(d).update(interval="often"), "interval"),
    "two schedule kinds": (lambda d: _flush_schedule(d).update(cron="* * * * *"), "Exactly one"),
    "no schedule": (lambda d: _deployment(d, DEPLOYMENT).update(schedules=[]), "exactly one interval or cron"),
    "a bad cron": (
        lambda d: _deployment(d, MAINTENANCE)["schedules"][0].update(cron="61 3 * * *"),
        "Invalid cron",
    ),
    "a missing entrypoint": (lambda d: _deployment(d, DEPLOYMENT).pop("entrypoint"), "has no entrypoint"),
    "an entrypoint to no flow": (
        lambda d: _deployment(d, DEPLOYMENT).update(entrypoint="flows/bronze_flush.py:no_such_flow"),
        "no_such_flow",
    ),
    "a parameter the flow does not take": (
        lambda d: _deployment(d, DEPLOYMENT).update(parameters={"tabels": ["trades_row_v1"]}),
        r"passes parameters \['tabels'\] that the flow does not take",
    ),
    "an unknown table": (
        lambda d: _deployment(d, DEPLOYMENT).update(parameters={"tables": ["trades_row_v9"]}),
        "trades_row_v9",
    ),
    "a wrong parameter type": (
        lambda d: _deployment(d, DEPLOYMENT).update(parameters={"dry_run": "sometimes"}),
        "sometimes",
    ),
    "a collision strategy Prefect lacks": (
        lambda d: _deployment(d, DEPLOYMENT)["concurrency_limit"].update(collision_strategy="QUEUE"),
        "collision_strategy",
    ),
    "a deployment storing FLUSHER_CONFIG": (
        lambda d: _deployment(d, DEPLOYMENT)["work_pool"].update(
            job_variables={"env": {"FLUSHER_CONFIG": "{{ $FLUSHER_CONFIG }}"}}
        ),
        "overriding the worker's own",
    ),
    "no pull step": (lambda d: d.pop("pull"), "no pull step"),
    "a pull step with the deploying machine's folder": (
        lambda d: d.update(pull=[{"prefect.deployments.steps.set_working_directory": {"directory": "/home/me/x"}}]),
        "bakes the folder /home/me/x",
    ),
    "parameters not enforced": (
        lambda d: _deployment(d, DEPLOYMENT).update(enforce_parameter_schema=False),
        "enforce_parameter_schema",
    ),
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_a_broken_prefect_yaml_is_refused(tmp_path, mutation):
    mutate, error = MUTATIONS[mutation]
    document = copy.deepcopy(yaml.safe_load(PREFECT_YAML.read_text()))
    mutate(document)
    broken = tmp_path / "prefect.yaml"
    broken.write_text(yaml.safe_dump(document, sort_keys=False))
    with pytest.raises(Exception, match=error):
        check_prefect_yaml(broken)


def _settings(**service: Any):
    raw = {
        "service": service,
        "postgres": {"host": "db", "database": "hot"},
        "ducklake": {"catalog_path": "host=db dbname=c", "data_path": "/l"},
    }
    return settings_from_mapping(raw, "config.yaml", {})


def test_the_config_cannot_disagree_with_the_schedule():
    spec = load_deployment(PREFECT_YAML)
    assert effective_interval(spec, _settings()) == 600  # the key is not set: prefect.yaml rules
    assert effective_interval(spec, _settings(flush_interval_minutes=10)) == 600  # set and agreeing
    with pytest.raises(ConfigError, match="the schedule lives in prefect.yaml"):
        effective_interval(spec, _settings(flush_interval_minutes=15))
