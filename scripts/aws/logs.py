"""The endpoint's CloudWatch log group, created ahead of SageMaker with a retention."""

from __future__ import annotations

from typing import Any

from gen3d.aws.clients import tag_map
from gen3d.aws.plan import CREATED, UNCHANGED, UPDATED, Plan


def endpoint_log_group(endpoint: str) -> str:
    return f"/aws/sagemaker/Endpoints/{endpoint}"


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
            logs.create_log_group(logGroupName=name, tags=tag_map(deployment))
            outcome = CREATED
        if not found or found[0].get("retentionInDays") != retention_days:
            logs.put_retention_policy(logGroupName=name, retentionInDays=retention_days)
            outcome = outcome if outcome == CREATED else UPDATED
        return outcome, None

    plan.step(
        f"log group {name} (retention {retention_days} d)",
        apply,
        request={
            "logGroupName": name,
            "retentionInDays": retention_days,
            "tags": tag_map(deployment),
        },
    )
