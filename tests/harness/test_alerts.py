"""`alerts` against Prefect's test harness: the four automations are created, then updated by name, with their
windows scaled to the schedule and the webhook block's token kept out of its url. That they reach a webhook is
tests/server/test_service.py's job."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from prefect.automations import Automation
from prefect.blocks.notifications import CustomWebhookNotificationBlock

from flusher.app.alerts import ensure_webhook_block, install_alerts
from tests.helpers import ROOT

NAMES = [
    "bronze-flush blocked by downstream",
    "bronze-flush run failed",
    "bronze-flush stale",
    "bronze-flush table failed",
]


def test_alerts_install_then_update_by_name_with_windows_of_three_intervals():
    block_id = ensure_webhook_block("flusher-alerts-harness", "https://hooks.example.com/services/T0/TokA7f3q9")
    try:
        made = install_alerts(ROOT / "automations", block_id, 300)  # a 5-minute schedule
        assert made == [f"created automation {name!r}" for name in NAMES]
        assert Automation.read(name="bronze-flush stale").trigger.within == timedelta(minutes=15)
        assert Automation.read(name="bronze-flush blocked by downstream").trigger.within == timedelta(minutes=15)
        assert Automation.read(name="bronze-flush run failed").trigger.within == timedelta(0)
        again = install_alerts(ROOT / "automations", block_id, 3600)
        assert again == [f"updated automation {name!r}" for name in NAMES]
        assert Automation.read(name="bronze-flush stale").trigger.within == timedelta(hours=3)
        stale = Automation.read(name="bronze-flush stale")
        assert stale.actions[0].block_document_id == block_id
        for name in NAMES:  # what the UI lists beside each automation (its trigger alone reads "A custom trigger")
            assert len(Automation.read(name=name).description) > 40, name
        block = CustomWebhookNotificationBlock.load("flusher-alerts-harness")
        assert "TokA7f3q9" not in block.url and block.url == "https://hooks.example.com{{ webhook_path }}"
    finally:
        for name in NAMES:
            with contextlib.suppress(ValueError):
                Automation.read(name=name).delete()
