"""Install the automations in automations/*.yaml (create or update by name) with a notification block."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml

from flusher.config import ConfigError

DEFAULT_BLOCK = "flusher-alerts"
WEBHOOK_URL_ENV = "FLUSHER_ALERT_WEBHOOK_URL"
# Names of the block's secret values that the URL template refers to (CustomWebhookNotificationBlock.secrets).
USERINFO, PATH = "webhook_userinfo", "webhook_path"
# The windows (`within`) in automations/*.yaml are written for the default schedule, every 10 minutes (3 intervals =
# 1800 s), so each file is a plain Prefect automation document; `alerts` scales them to the schedule in prefect.yaml.
WINDOWS_WRITTEN_FOR_SECONDS = 600


def webhook_url_from(argument: str | None, env_name: str | None, environ: dict[str, str] | None = None) -> str | None:
    """The webhook URL: --webhook-url, else the variable --webhook-url-env names, else $FLUSHER_ALERT_WEBHOOK_URL.

    The environment keeps the URL's token off the command line (`ps` shows every process's arguments).
    """
    environ = dict(os.environ if environ is None else environ)
    if argument:
        return argument
    if env_name:
        if not environ.get(env_name):
            raise ConfigError(f"--webhook-url-env {env_name}: that environment variable is not set or empty")
        return environ[env_name]
    return environ.get(WEBHOOK_URL_ENV) or None


def webhook_template(url: str) -> tuple[str, dict[str, str]]:
    """The URL as a template the block stores in the clear, and the secret parts it refers to.

    Only scheme and host:port stay visible; the userinfo and the path with its query string (where webhook
    services put their token: /services/T0/B0/XXXX, ?token=...) become `{{webhook_userinfo}}`/`{{webhook_path}}`,
    which Prefect fills from the block's SecretDict when it sends (prefect.utilities.templating.apply_values).
    """
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc.rsplit("@", 1)[-1]:
        raise ConfigError("the webhook URL must be an http:// or https:// URL with a host")
    userinfo, at, host = parts.netloc.rpartition("@")
    template, secrets = f"{parts.scheme}://", {}
    if at:
        secrets[USERINFO] = userinfo
        template += "{{ " + USERINFO + " }}@"
    template += host
    rest = parts.path + (f"?{parts.query}" if parts.query else "")
    if rest.strip("/"):
        secrets[PATH] = rest
        template += "{{ " + PATH + " }}"
    else:
        template += rest
    return template, secrets


def ensure_webhook_block(name: str, url: str | None) -> UUID:
    """The notification block's id; with a URL, create or update a custom webhook block of that name first.

    The URL's token is stored as a secret of the block (masked in the UI and the API), never in its `url` field.
    """
    from prefect.blocks.core import Block
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    from flusher.secrets import remember

    if url:
        template, secrets = webhook_template(url)
        remember(url, *secrets.values())  # never printed by this process either
        block = CustomWebhookNotificationBlock(
            name="postgres-ducklake-flusher",
            url=template,
            method="POST",
            json_data={"subject": "{{subject}}", "body": "{{body}}"},
            allow_private_urls=True,
            secrets=secrets,
        )
        return block.save(name, overwrite=True)
    try:
        return Block.load(f"custom-webhook/{name}")._block_document_id
    except ValueError:
        raise ConfigError(
            f"no notification block {name!r}: set ${WEBHOOK_URL_ENV} (or pass --webhook-url-env NAME) to create a "
            "webhook block, or create one "
            "(Slack, Teams, e-mail, ...) of that name in the Prefect UI and pass --notify-block"
        ) from None


def scaled_window(within_seconds: float, interval_seconds: int) -> int:
    """A trigger's window written for the default schedule, in seconds for a schedule of `interval_seconds`."""
    return round(within_seconds * interval_seconds / WINDOWS_WRITTEN_FOR_SECONDS)


def load_automation(path: Path, block_id: UUID, interval_seconds: int) -> dict[str, Any]:
    """One automation document from YAML, with the notification block filled in and its window rescaled."""
    spec = yaml.safe_load(path.read_text())
    trigger = spec["trigger"]
    if trigger.get("within"):
        trigger["within"] = scaled_window(float(trigger["within"]), interval_seconds)
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
