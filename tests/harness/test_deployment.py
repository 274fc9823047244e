"""The bronze-flush deployment as `serve` registers it (app/deployment_spec.py + build_deployment), against Prefect's
test harness: what the API stores, and its parameter schema refusing an unknown table before a flow run exists."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.deployments import run_deployment

from flusher.app.deployment_spec import MAINTENANCE, load_deployment
from flusher.app.service import build_deployment
from tests.helpers import ROOT


@pytest.fixture
def flush_deployment(tmp_path: Path):
    """The flush deployment applied to the harness API (config_path points at a file that need not exist)."""
    config = tmp_path / "config.yaml"
    deployment = build_deployment(load_deployment(ROOT / "prefect.yaml"), config)
    deployment_id = deployment.apply()
    yield deployment, deployment_id, config
    with get_client(sync_client=True) as client:
        client.delete_deployment(deployment_id)


def test_the_registered_deployment_is_what_prefect_yaml_declares(flush_deployment):
    deployment, deployment_id, config = flush_deployment
    assert deployment.enforce_parameter_schema
    with get_client(sync_client=True) as client:
        stored = client.read_deployment(deployment_id)
    assert stored.name == "bronze-flush" and {"bronze", "postgres-ducklake-flusher"} <= set(stored.tags)
    assert [s.schedule.interval for s in stored.schedules] == [timedelta(seconds=600)]
    assert stored.global_concurrency_limit.limit == 1 and stored.concurrency_options.collision_strategy == "CANCEL_NEW"
    assert stored.parameters == {"config_path": str(config.resolve())}
    assert stored.enforce_parameter_schema
    assert "trades_row_v1" in str(stored.parameter_openapi_schema), "the schema enumerates the known tables"


def test_a_short_interval_override_and_the_maintenance_cron_are_registered(tmp_path):
    config = tmp_path / "config.yaml"
    flush = build_deployment(load_deployment(ROOT / "prefect.yaml"), config, interval_seconds=5)
    maintenance = build_deployment(load_deployment(ROOT / "prefect.yaml", MAINTENANCE), config)
    ids = [flush.apply(), maintenance.apply()]
    try:
        with get_client(sync_client=True) as client:
            flush_stored, maintenance_stored = (client.read_deployment(i) for i in ids)
        assert [s.schedule.interval for s in flush_stored.schedules] == [timedelta(seconds=5)]
        assert [s.schedule.cron for s in maintenance_stored.schedules] == ["17 3 * * *"]
    finally:
        with get_client(sync_client=True) as client:
            for deployment_id in ids:
                client.delete_deployment(deployment_id)


@pytest.mark.parametrize(
    "parameters, refused",
    [
        ({"tables": ["trades_row_v9"]}, "trades_row_v9"),
        ({"dry_run": "sometimes"}, "sometimes"),
        ({"max_ledgers_per_run": "many"}, "many"),
    ],
)
def test_a_deployment_run_with_a_bad_parameter_is_refused_before_a_flow_run_exists(
    flush_deployment, parameters, refused
):
    _, deployment_id, _ = flush_deployment
    with pytest.raises(Exception, match=refused):
        run_deployment("bronze-flush/bronze-flush", parameters=parameters, timeout=0)
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
    assert runs == [], "no flow run, so no failure alert"


def test_a_deployment_run_with_good_parameters_is_accepted(flush_deployment):
    _, deployment_id, _ = flush_deployment
    flow_run = run_deployment(
        "bronze-flush/bronze-flush", parameters={"tables": ["ledgers_row_v2"], "dry_run": True}, timeout=0
    )
    assert flow_run.parameters["tables"] == ["ledgers_row_v2"] and flow_run.deployment_id == deployment_id
    with get_client(sync_client=True) as client:
        client.delete_flow_run(flow_run.id)
