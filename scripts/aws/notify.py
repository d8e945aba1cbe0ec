"""SNS topics for async success/error notifications, with an optional email subscription
(SNS email replaces a separate notify Lambda + SES)."""

from __future__ import annotations

from typing import Any

from gen3d.aws.clients import tag_list
from gen3d.aws.plan import CREATED, UNCHANGED, ApiCall, Plan


def topic_names(deployment: str) -> tuple[str, str]:
    return f"gen3d-{deployment}-success", f"gen3d-{deployment}-error"


def ensure_topic(plan: Plan, sns: Any, name: str, deployment: str) -> str:
    request = {"Name": name, "Tags": tag_list(deployment)}

    def apply() -> tuple[str, str]:
        existing = {
            t["TopicArn"]
            for page in sns.get_paginator("list_topics").paginate()
            for t in page["Topics"]
        }
        # CreateTopic is itself idempotent for the same name and attributes.
        arn = sns.create_topic(**request)["TopicArn"]
        return (UNCHANGED if arn in existing else CREATED), arn

    return plan.step(
        f"SNS topic {name}",
        apply,
        placeholder=f"<arn of SNS topic {name}>",
        calls=[ApiCall("sns", "CreateTopic", request)],
    )


def ensure_email_subscription(plan: Plan, sns: Any, topic_arn: str, email: str) -> None:
    request = {"TopicArn": topic_arn, "Protocol": "email", "Endpoint": email}

    def apply() -> tuple[str, None]:
        subs = [
            s
            for page in sns.get_paginator("list_subscriptions_by_topic").paginate(
                TopicArn=topic_arn
            )
            for s in page["Subscriptions"]
        ]
        if any(s["Protocol"] == "email" and s["Endpoint"] == email for s in subs):
            return UNCHANGED, None
        sns.subscribe(**request)
        return CREATED, None

    plan.step(
        f"email subscription {email} -> {topic_arn.rsplit(':', 1)[-1]}",
        apply,
        calls=[ApiCall("sns", "Subscribe", request)],
    )
