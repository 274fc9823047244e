"""No secret leaves the process: every form of every password, grepped wherever text goes (issue 14).

The CLI and a flow run against the real Prefect API with a distinctive fake password and a server that is
unreachable, then grep stdout/stderr, the flow runs' and task runs' states, their logs, events and artifacts (read
back from the API), the Prefect database files, `status`, /health and /metrics, the flusher's state tables and the
lake folder. The masking and the config loader themselves are unit-tested in tests/unit/test_secrets.py.
"""

from __future__ import annotations

import os
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import HotEnv, flush, write_config

# --- end to end: the CLI and flow runs against the real Prefect API -----------------------------------------------


@dataclass
class Form:
    """One way a secret reaches the flusher, and the distinctive strings that must never come back."""

    name: str
    sections: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    hidden: list[str] = field(default_factory=list)
    valid: bool = True  # the config loads (False: a configuration error names the key)


UNREACHABLE = "127.0.0.1 port=1"
FORMS = [
    Form(
        "uri",
        {"ducklake": {"catalog_path": "postgresql://flusher:UriPwA7f3q9@127.0.0.1:1/cat"}},
        hidden=["UriPwA7f3q9"],
    ),
    # libpq would read the unencoded '/' as the end of the host: "UriA7f3q9" became the port, in DuckDB's error.
    Form(
        "uri-unencoded",
        {"ducklake": {"catalog_path": "postgresql://flusher:UriA7f3q9/UriB8k2w1@127.0.0.1:1/cat"}},
        hidden=["UriA7f3q9", "UriB8k2w1"],
        valid=False,
    ),
    Form(
        "percent-encoded-uri",
        {"ducklake": {"catalog_path": "postgresql://flusher:PctA7f3q9%40x%2F%20PctB8k2w1@127.0.0.1:1/cat"}},
        hidden=["PctA7f3q9", "PctB8k2w1"],
    ),
    Form(
        "quoted-with-space",
        {"ducklake": {"catalog_path": f"host={UNREACHABLE} dbname=cat password='QuoA7f3q9 QuoB8k2w1'"}},
        hidden=["QuoA7f3q9", "QuoB8k2w1"],
    ),
    Form(
        "unquoted-bad-value",
        {"ducklake": {"catalog_path": f"host={UNREACHABLE} dbname=cat password=BadA7f3q9 BadB8k2w1"}},
        hidden=["BadA7f3q9", "BadB8k2w1"],
        valid=False,
    ),
    Form(
        "environment",
        env={"FLUSHER_DUCKLAKE_CATALOG_PATH": f"host={UNREACHABLE} dbname=cat password=EnvA7f3q9 EnvB8k2w1"},
        hidden=["EnvA7f3q9", "EnvB8k2w1"],
        valid=False,
    ),
    Form(
        "s3-keys",
        {
            "ducklake": {
                "data_path": "s3://bronze/lake/",
                "aws_access_key_id": "S3KeyIdA7f3q9",
                "aws_secret_access_key": "S3SecretA7f3q9",
                "aws_endpoint": "127.0.0.1:1",
                "aws_region": "us-east-1",
                "aws_url_style": "path",
                "aws_use_ssl": False,
            }
        },
        hidden=["S3SecretA7f3q9", "S3KeyIdA7f3q9"],
    ),
    Form(
        "downstream",
        {
            "downstream": [
                {
                    "name": "silver",
                    "dsn": "postgresql://silver:DsnPwA7f3q9@127.0.0.1:1/s",
                    "table": "t",
                    "column": "c",
                    "connect_timeout_seconds": 2,
                },
                {
                    "name": "gold",
                    "host": "127.0.0.1",
                    "port": 1,
                    "database": "g",
                    "user": "g",
                    "password": "DsHostA7f3q9",
                    "table": "t",
                    "column": "c",
                    "connect_timeout_seconds": 2,
                },
            ]
        },
        hidden=["DsnPwA7f3q9", "DsHostA7f3q9"],
    ),
]


def _leaks(text: str, hidden: list[str]) -> list[str]:
    return [h for h in hidden if h in text]


def _api_text(since: datetime, flow_run_id: Any) -> str:
    """Everything the Prefect API holds since `since`: flow and task runs (states), logs, artifacts, events."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterStartTime, LogFilter, LogFilterTimestamp
    from prefect.events.filters import EventFilter, EventOccurredFilter, EventResourceFilter

    texts = []
    with get_client(sync_client=True) as client:
        # Prefect persists events a little later: wait for this run's final state event, then read them all.
        deadline = time.monotonic() + 60
        mine = EventFilter(
            occurred=EventOccurredFilter(since=since),
            resource=EventResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"]),
        )
        while time.monotonic() < deadline:
            page = client.read_events(mine, limit=50)
            if any(e.event.split(".")[-1] in ("Failed", "Completed", "Crashed", "Skipped") for e in page.events):
                break
            time.sleep(0.5)
        time.sleep(1.5)  # the logs of the last lines, in their batch
        page = client.read_events(EventFilter(occurred=EventOccurredFilter(since=since)), limit=50)
        while True:
            texts += [e.model_dump_json() for e in page.events]
            if not page.next_page:
                break
            page = client.read_events_page(page.next_page)
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since)))
        texts += [r.model_dump_json() for r in runs]
        texts += [
            t.model_dump_json()
            for t in client.read_task_runs(
                flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since))
            )
        ]
        offset = 0
        while True:
            logs = client.read_logs(LogFilter(timestamp=LogFilterTimestamp(after_=since)), limit=200, offset=offset)
            texts += [log.model_dump_json() for log in logs]
            if len(logs) < 200:
                break
            offset += 200
        texts += [a.model_dump_json() for a in client.read_artifacts(limit=200)]
    assert any(str(flow_run_id) in t for t in texts), "the flow run is in the API"
    return "\n".join(texts)


def _files_text(*folders: Path) -> str:
    """The bytes of every file under the folders, as text (the Prefect database, the lake)."""
    out = []
    for folder in folders:
        for path in folder.rglob("*") if folder.exists() else []:
            if path.is_file():
                out.append(path.read_bytes().decode("utf-8", errors="replace"))
    return "\n".join(out)


def _state_tables_text(hot: HotEnv) -> str:
    rows = hot.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'flusher_state'")
    return "\n".join(str(hot.execute(f'SELECT row_to_json(t)::text FROM flusher_state."{name}" t')) for (name,) in rows)


def _health_text(hot: HotEnv) -> str:
    """/health and /metrics of a health server on this config."""
    from flusher.app.health import HealthProbe, HealthServer
    from flusher.hot import make_pool

    settings = hot.settings()
    with make_pool(settings.postgres) as pool:
        probe = HealthProbe(settings, pool, lambda: None, interval_seconds=600)
        probe.refresh()  # the first reading before the first request
        server = HealthServer(probe, "127.0.0.1", 0)
        server.start()
        try:
            return "\n".join(_get(f"http://127.0.0.1:{server.port}{path}") for path in ("/health", "/metrics"))
        finally:
            server.stop()


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.read().decode()
    except urllib.error.HTTPError as exc:  # 503 when unhealthy: its body is what we grep
        return exc.read().decode()


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
@pytest.mark.parametrize("form", FORMS, ids=[f.name for f in FORMS])
def test_no_secret_leaves_the_process(hot, form, monkeypatch):
    since = datetime.now(UTC) - timedelta(seconds=1)
    hot.config = write_config(hot, **form.sections)
    hot.load(1, 2)
    seen: dict[str, str] = {}

    # The CLI: its own output, and (flush) a flow run in a child process that reports to the same API.
    for command in ("flush", "status") + (("init",) if form.valid else ()):
        result = hot.run_cli(command, env=form.env)
        seen[f"cli {command} (exit {result.returncode})"] = result.stdout + result.stderr
        assert result.returncode in (0, 1, 2)
        if not form.valid:
            assert result.returncode == 2 and "ducklake.catalog_path" in result.stderr, result.stderr
    # A flow run in this process.
    for name, value in form.env.items():
        monkeypatch.setenv(name, value)
    state = flush(hot)
    assert not state.is_completed() or state.name == "Skipped", state
    seen["flow state"] = f"{state.name}: {state.message}"
    seen["Prefect API"] = _api_text(since, state.state_details.flow_run_id)
    seen["Prefect database"] = _files_text(Path(os.environ["PREFECT_HOME"]))
    seen["lake folder"] = _files_text(hot.tmp / "lake")
    seen["state tables"] = _state_tables_text(hot)
    if form.valid:
        seen["/health and /metrics"] = _health_text(hot)
    leaks = {where: _leaks(text, form.hidden) for where, text in seen.items() if _leaks(text, form.hidden)}
    assert not leaks, f"{form.name}: secrets leaked in {leaks}"


# --- config_path: a run parameter reads no file it should not, and echoes nothing of one --------------------------

SHADOW = "root:$6$ShadowA7f3q9$x:19000:0:99999:7:::\nkey with spaces ShadowB8k2w1: yes\napi_token: ShadowC9m4v2\n"


def _flow_run_text(flow_run_id: Any) -> str:
    """The flow run (state message) and its logs, read back from the API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    time.sleep(1.5)  # the last log batch
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return "\n".join([run.model_dump_json(), *(log.message for log in logs)])


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_a_file_that_is_not_a_config_echoes_nothing_in_a_flow_run(hot, tmp_path):
    secretish = tmp_path / "shadow"
    secretish.write_text(SHADOW)
    from flusher.flows.bronze_flush import bronze_flush

    for path in (secretish, Path("/etc/passwd")):
        state = bronze_flush(config_path=str(path), return_state=True)
        assert state.is_failed(), state
        assert "not a flusher configuration" in state.message or "expected a mapping" in state.message, state.message
        text = _flow_run_text(state.state_details.flow_run_id)
        leaked = [word for word in ("ShadowA7f3q9", "ShadowB8k2w1", "ShadowC9m4v2", "root:", "/bin/") if word in text]
        assert not leaked, leaked


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.usefixtures("prefect_api")
def test_a_deployment_run_reads_its_config_only_from_flusher_config_or_the_config_dir(hot, tmp_path):
    """A run started through the API (as anyone allowed to start runs can) names config_path=/etc/passwd or a file
    outside $FLUSHER_CONFIG_DIR: refused without reading it. The worker's own $FLUSHER_CONFIG still works."""
    import subprocess
    import sys

    from prefect.deployments import run_deployment

    from flusher.app.deployment_spec import load_deployment
    from flusher.app.service import build_deployment
    from tests.helpers import ROOT

    secretish = tmp_path / "shadow.yaml"
    secretish.write_text(SHADOW)
    allowed = tmp_path / "configs"
    allowed.mkdir()
    (allowed / "other.yaml").write_text(hot.config.read_text())
    (allowed / "sneaky.yaml").symlink_to(secretish)
    worker_env = {**os.environ, "FLUSHER_CONFIG": str(hot.config), "FLUSHER_CONFIG_DIR": str(allowed)}
    deployment_id = build_deployment(load_deployment(ROOT / "prefect.yaml"), hot.config).apply()
    # The pull step `prefect deploy` registers for a local project. Without one, `prefect flow-run execute` "downloads"
    # the deployment's path (this checkout, .venv included) onto itself: ~40 s per run.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate

    with get_client(sync_client=True) as client:
        pull = [{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]
        client.update_deployment(deployment_id, DeploymentUpdate(pull_steps=pull))

    def run(config_path: str) -> Any:
        flow_run = run_deployment("bronze-flush/bronze-flush", parameters={"config_path": config_path}, timeout=0)
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "prefect", "flow-run", "execute", str(flow_run.id)],
            cwd=ROOT,
            env=worker_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        took = time.monotonic() - started
        assert done.returncode in (0, 1), f"{took:.0f}s: {done.stdout[-2000:]} {done.stderr[-2000:]}"
        return flow_run.id

    try:
        for accepted in (str(allowed / "other.yaml"),):
            text = _flow_run_text(run(accepted))
            assert "nothing to flush" in text and "refused" not in text, text[:2000]
        # (each run takes a worker's start; the other refusals, /etc/passwd, '..', are unit-tested above)
        for refused in (str(allowed / "sneaky.yaml"),):
            flow_run_id = run(refused)
            text = _flow_run_text(flow_run_id)
            assert "refused, and not read" in text, text[:2000]
            leaked = [w for w in ("ShadowA7f3q9", "ShadowB8k2w1", "ShadowC9m4v2", "root:", "/bin/") if w in text]
            assert not leaked, leaked
    finally:
        with get_client(sync_client=True) as client:
            client.delete_deployment(deployment_id)


# --- the alert webhook's token: from the environment, stored as a block secret ------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_the_webhook_token_comes_from_the_environment_and_is_stored_as_a_secret(hot):
    from prefect.client.orchestration import get_client

    from tests.helpers import ENABLED, delete_automations
    from tests.webhook import WebhookReceiver

    receiver = WebhookReceiver()
    token_path = "/hook/T0/TokA7f3q9?key=KeyB8k2w1"
    url = receiver.url.removesuffix("/hook") + token_path
    try:
        made = hot.run_cli("alerts", "--interval-seconds", "5", env={"FLUSHER_ALERT_WEBHOOK_URL": url})
        assert made.returncode == 0, made.stderr
        assert "TokA7f3q9" not in made.stdout + made.stderr
        with get_client(sync_client=True) as client:
            stored = client.read_block_document_by_name("flusher-alerts", "custom-webhook", include_secrets=False)
        assert stored.data["url"] == receiver.url.removesuffix("/hook") + "{{ webhook_path }}", stored.data["url"]
        assert "TokA7f3q9" not in stored.model_dump_json() and "KeyB8k2w1" not in stored.model_dump_json()

        hot.config = write_config(hot, flush={"tables": ENABLED})  # named, a missing table fails
        hot.execute("DROP TABLE offers_snapshot_v1")
        hot.load(1, 3, tables=["ledgers_row_v2"])
        receiver.wait_after(lambda: flush(hot), "offers_snapshot_v1")  # the run-failed or the table-failed alert
        assert token_path in receiver.paths, receiver.paths  # Prefect filled the template from the block's secrets
    finally:
        receiver.stop()
        delete_automations()
