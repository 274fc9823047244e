"""Install the automations in automations/*.yaml (create or update by name) with a notification block."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

import yaml

from flusher.config import ConfigError

DEFAULT_BLOCK = "flusher-alerts"


def ensure_webhook_block(name: str, url: str | None) -> UUID:
    """The notification block's id; with a URL, create or update a custom webhook block of that name first."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.blocks.core import Block

    if url:
        block = CustomWebhookNotificationBlock(
            name="postgres-ducklake-flusher",
            url=url,
            method="POST",
            json_data={"subject": "{{subject}}", "body": "{{body}}"},
            allow_private_urls=True,
        )
        return block.save(name, overwrite=True)
    try:
        return Block.load(f"custom-webhook/{name}")._block_document_id
    except ValueError:
        raise ConfigError(
            f"no notification block {name!r}: pass --webhook-url to create a webhook block, or create one "
            "(Slack, Teams, e-mail, ...) of that name in the Prefect UI and pass --notify-block"
        ) from None


def load_automation(path: Path, block_id: UUID, within_seconds_per_interval: int) -> dict[str, Any]:
    """One automation spec from YAML, with the block and the proactive window filled in."""
    spec = yaml.safe_load(path.read_text())
    trigger = spec["trigger"]
    intervals = trigger.pop("within_intervals", None)
    if intervals is not None:
        trigger["within"] = int(intervals) * within_seconds_per_interval
    for action in spec["actions"]:
        if action["type"] == "send-notification":
            action["block_document_id"] = str(block_id)
    return spec


def install_alerts(directory: Path, block_id: UUID, interval_seconds: int) -> list[str]:
    """Create each automation, or update the one with the same name; returns what was done."""
    from prefect.automations import Automation

    done = []
    for path in sorted(directory.glob("*.yaml")):
        spec = load_automation(path, block_id, interval_seconds)
        wanted = Automation.model_validate(spec)
        try:
            existing = Automation.read(name=wanted.name)
        except ValueError:
            existing = None
        if existing is None:
            wanted.create()
            done.append(f"created automation {wanted.name!r}")
        else:
            wanted.id = existing.id
            wanted.update()
            done.append(f"updated automation {wanted.name!r}")
    return done
