"""What `gen3d deploy` adds to watch a deployment: the SNS error topic (async deployments
have it already), the alarms that notify it, and the dashboard (gen3d.aws.alarms,
gen3d.aws.dashboard). Returns the endpoint's DeploymentConfig, if it gets one."""

from __future__ import annotations

from typing import Any

from gen3d.aws import alarms, dashboard, notify
from gen3d.aws.clients import AwsClients
from gen3d.aws.endpoint_spec import DeploySpec
from gen3d.aws.plan import Plan


def ensure_monitoring(
    plan: Plan,
    clients: AwsClients,
    spec: DeploySpec,
    *,
    error_topic: str | None,
    inference_components: bool,
) -> dict[str, Any] | None:
    """Topic, alarms and dashboard; for a real-time endpoint with a model per variant, the
    blue/green DeploymentConfig that rolls back on the 5xx alarm (None otherwise: async
    and serverless endpoints take no blue/green policy, and inference-component endpoints
    are updated per component)."""
    if error_topic is None:
        _, error_name = notify.topic_names(spec.name)
        error_topic = notify.ensure_topic(plan, clients.sns, error_name, spec.name)
        if spec.notify_email:
            notify.ensure_email_subscription(plan, clients.sns, error_topic, spec.notify_email)
    alarms.ensure_alarms(plan, clients.cloudwatch, spec, error_topic)
    dashboard.ensure_dashboard(plan, clients.cloudwatch, spec, clients.region)
    if spec.mode == "realtime" and not inference_components:
        return alarms.deployment_config(spec)
    return None
