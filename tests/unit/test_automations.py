"""automations/*.yaml are Prefect automation documents, checked with Prefect's own models and template environment;
mutation cases prove the checks catch each kind of mistake. `alerts` rescales their windows to the schedule.

That each automation really reaches a webhook is tests/server/test_service.py's job.
"""

from __future__ import annotations

import copy
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import jinja2.meta
import pytest
import yaml
from prefect.events.schemas.automations import AutomationCore
from prefect.server.utilities.user_templates import (
    _template_environment,
    render_user_template_sync,
    validate_user_template,
)

from flusher.app.alerts import WINDOWS_WRITTEN_FOR_SECONDS, load_automation, scaled_window
from flusher.app.deployment_spec import load_deployment
from flusher.config import ServiceSettings
from tests.helpers import ROOT

FILES = sorted((ROOT / "automations").glob("*.yaml"))
BLOCK = uuid.UUID(int=1)  # what `alerts` fills in: the notification block (the one thing a file cannot know)
# The names a notification template may use: the context Prefect builds (prefect/server/events/actions.py,
# ExternalDataAction._template_context and _relevant_native_objects). Anything else renders empty.
TEMPLATE_NAMES = {
    "automation",
    "event",
    "labels",
    "firing",
    "firings",
    "events",
    "deployment",
    "flow",
    "flow_run",
    "task_run",
    "work_pool",
    "work_queue",
    "concurrency_limit",
    "variables",
}


def _unknown_keys(raw: Any, parsed: Any, where: str = "") -> list[str]:
    """Keys of the document that the model dropped (Prefect's models ignore unknown keys silently)."""
    if isinstance(raw, dict) and isinstance(parsed, dict):
        found = [f"{where}{key}" for key in raw if key not in parsed]
        return found + [k for key in raw if key in parsed for k in _unknown_keys(raw[key], parsed[key], f"{key}.")]
    if isinstance(raw, list) and isinstance(parsed, list):
        return [k for r, p in zip(raw, parsed, strict=False) for k in _unknown_keys(r, p, where)]
    return []


def check_automation(document: dict[str, Any]) -> AutomationCore:
    """Raise unless `document` (with the block filled in) is a Prefect automation with no ignored key and
    notification templates that parse and use only names Prefect provides."""
    document = copy.deepcopy(document)
    for action in document.get("actions") or []:
        if action.get("type") == "send-notification":
            action["block_document_id"] = str(BLOCK)
    automation = AutomationCore.model_validate(document)
    unknown = _unknown_keys(document, automation.model_dump(mode="json"))
    if unknown:
        raise ValueError(f"keys Prefect ignores: {unknown}")
    for action in document["actions"]:
        for field in ("subject", "body"):
            template = action.get(field) or ""
            validate_user_template(template)
            names = jinja2.meta.find_undeclared_variables(_template_environment.parse(template))
            if names - TEMPLATE_NAMES:
                raise ValueError(f"{field} uses {sorted(names - TEMPLATE_NAMES)}, which Prefect does not provide")
    return automation


def _raw(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "automations" / name).read_text())


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_automation_file_is_a_prefect_automation_document(path: Path):
    automation = check_automation(yaml.safe_load(path.read_text()))
    assert automation.name.startswith("bronze-flush")
    assert [a.type for a in automation.actions] == ["send-notification"]


def test_there_are_the_four_documented_alerts():
    assert [p.name for p in FILES] == [
        "downstream-blocked.yaml",
        "flush-failed.yaml",
        "no-recent-flush.yaml",
        "table-failed.yaml",
    ]


def _set(path: str, value: Any):
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return mutate


_DELETE = object()


@pytest.mark.parametrize(
    ("file", "mutate", "error"),
    [
        ("no-recent-flush.yaml", _set("trigger.within_intervals", 3), r"keys Prefect ignores: \['trigger.within_"),
        ("flush-failed.yaml", _set("trigger.treshold", 2), r"trigger.treshold"),
        ("flush-failed.yaml", _set("descripton", "typo"), r"descripton"),
        ("table-failed.yaml", _set("actions.0.bodyy", "typo"), r"bodyy"),
        ("flush-failed.yaml", _set("trigger.posture", "Sometimes"), "posture"),
        ("flush-failed.yaml", _set("trigger.within", "ten minutes"), "within"),
        ("table-failed.yaml", _set("actions.0.type", "send-email"), "send-email"),
        ("table-failed.yaml", _set("name", _DELETE), "name"),
        ("no-recent-flush.yaml", _set("trigger", _DELETE), "trigger"),
        ("no-recent-flush.yaml", _set("actions.0.body", "in the last {{ trigger.within }}"), r"\['trigger'\]"),
        ("table-failed.yaml", _set("actions.0.subject", "table {{ event.payload.table "), "unexpected end"),
    ],
)
def test_a_broken_automation_is_refused(file, mutate, error):
    document = _raw(file)
    mutate(document)
    with pytest.raises(Exception, match=error):
        check_automation(document)


def test_the_windows_are_written_for_the_default_schedule():
    """The files' 1800 s windows mean 3 intervals only at the default schedule: all three agree on 10 minutes."""
    assert ServiceSettings().flush_interval_minutes * 60 == WINDOWS_WRITTEN_FOR_SECONDS
    assert load_deployment(ROOT / "prefect.yaml").interval_seconds == WINDOWS_WRITTEN_FOR_SECONDS
    assert _raw("no-recent-flush.yaml")["trigger"]["within"] == 3 * WINDOWS_WRITTEN_FOR_SECONDS
    assert _raw("downstream-blocked.yaml")["trigger"]["within"] == 3 * WINDOWS_WRITTEN_FOR_SECONDS


@pytest.mark.parametrize(("interval", "window"), [(600, 1800), (300, 900), (3600, 10800), (5, 15)])
def test_alerts_rescale_the_stale_and_downstream_windows_to_three_intervals(interval, window):
    assert scaled_window(1800, interval) == window
    for name in ("no-recent-flush.yaml", "downstream-blocked.yaml"):
        spec = load_automation(ROOT / "automations" / name, BLOCK, interval)
        assert spec["trigger"]["within"] == window, name
        assert AutomationCore.model_validate(spec).trigger.within == timedelta(seconds=window)
    for name in ("flush-failed.yaml", "table-failed.yaml"):  # reactive, one event: no window to scale
        assert load_automation(ROOT / "automations" / name, BLOCK, interval)["trigger"]["within"] == 0
    spec = load_automation(ROOT / "automations" / "table-failed.yaml", BLOCK, interval)
    assert spec["actions"][0]["block_document_id"] == str(BLOCK)


@pytest.mark.parametrize(("interval", "said"), [(600, "30 minutes"), (900, "45 minutes"), (5, "15 seconds")])
def test_the_stale_alert_says_the_real_window(interval, said):
    """Rendered by Prefect's own template environment with the installed automation, as the notification is."""
    automation = AutomationCore.model_validate(
        load_automation(ROOT / "automations" / "no-recent-flush.yaml", BLOCK, interval)
    )
    body = render_user_template_sync(automation.actions[0].body, {"automation": automation})
    assert f"No bronze-flush run completed in the last {said};" in body, body
