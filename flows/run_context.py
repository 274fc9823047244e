"""What a flow may know about how its run was started."""

from __future__ import annotations

from prefect.context import FlowRunContext


def started_from_deployment() -> bool:
    """True when this flow run belongs to a deployment: its parameters then come from whoever started the run
    through the API (a manual run, an automation), not from the operator who runs the code (CLI, Python)."""
    context = FlowRunContext.get()
    return bool(context and context.flow_run and context.flow_run.deployment_id)
