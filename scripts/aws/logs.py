"""The deployment's CloudWatch log groups, created ahead of SageMaker with a retention."""

from __future__ import annotations

from typing import Any

from gen3d.aws.clients import tag_map
from gen3d.aws.plan import CREATED, UNCHANGED, UPDATED, ApiCall, Plan

LOG_GROUP_ROOT = "/aws/sagemaker"


def endpoint_log_group(endpoint: str) -> str:
    return f"{LOG_GROUP_ROOT}/Endpoints/{endpoint}"


def inference_component_log_group(component: str) -> str:
    """Where SageMaker writes an inference component's container logs (not the
    endpoint's group): /aws/sagemaker/InferenceComponents/<name>."""
    return f"{LOG_GROUP_ROOT}/InferenceComponents/{component}"


def lambda_log_group(function: str) -> str:
    """Where Lambda writes a function's logs (created by Lambda itself, with no retention
    and no tag, unless it exists first)."""
    return f"/aws/lambda/{function}"


def ensure_log_group(
    plan: Plan, logs: Any, name: str, deployment: str, retention_days: int
) -> None:
    def apply() -> tuple[str, None]:
        found = [
            g
            for g in logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
            if g["logGroupName"] == name
        ]
        outcome = UNCHANGED
        if not found:
            logs.create_log_group(**create)
            outcome = CREATED
        if not found or found[0].get("retentionInDays") != retention_days:
            logs.put_retention_policy(**retention)
            outcome = outcome if outcome == CREATED else UPDATED
        return outcome, None

    create = {"logGroupName": name, "tags": tag_map(deployment)}
    retention = {"logGroupName": name, "retentionInDays": retention_days}
    plan.step(
        f"log group {name} (retention {retention_days} d)",
        apply,
        calls=[
            ApiCall("logs", "CreateLogGroup", create),
            ApiCall("logs", "PutRetentionPolicy", retention),
        ],
    )
