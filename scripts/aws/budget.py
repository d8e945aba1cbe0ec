"""A monthly cost budget with an email alert at a share of the limit (actual spend) and at
the full limit (forecast)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from gen3d.aws.clients import tag_list
from gen3d.aws.plan import CREATED, UNCHANGED, UPDATED, Plan


def budget_name(deployment: str) -> str:
    return f"gen3d-{deployment}"


def budget_request(
    deployment: str, account: str, limit_usd: float, email: str, alert_percent: float = 80.0
) -> dict[str, Any]:
    subscribers = [{"SubscriptionType": "EMAIL", "Address": email}]
    return {
        "AccountId": account,
        "Budget": {
            "BudgetName": budget_name(deployment),
            "BudgetLimit": {"Amount": f"{limit_usd:.2f}", "Unit": "USD"},
            "TimeUnit": "MONTHLY",
            "BudgetType": "COST",
        },
        "NotificationsWithSubscribers": [
            {
                "Notification": {
                    "NotificationType": "ACTUAL",
                    "ComparisonOperator": "GREATER_THAN",
                    "Threshold": alert_percent,
                    "ThresholdType": "PERCENTAGE",
                },
                "Subscribers": subscribers,
            },
            {
                "Notification": {
                    "NotificationType": "FORECASTED",
                    "ComparisonOperator": "GREATER_THAN",
                    "Threshold": 100.0,
                    "ThresholdType": "PERCENTAGE",
                },
                "Subscribers": subscribers,
            },
        ],
        "ResourceTags": tag_list(deployment),
    }


def ensure_budget(
    plan: Plan, budgets: Any, request: dict[str, Any], account: str | None = None
) -> None:
    name = request["Budget"]["BudgetName"]

    def apply() -> tuple[str, None]:
        acct = account or request["AccountId"]
        req = {**request, "AccountId": acct}
        try:
            current = budgets.describe_budget(AccountId=acct, BudgetName=name)["Budget"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NotFoundException":
                raise
            budgets.create_budget(**req)
            return CREATED, None
        wanted = req["Budget"]["BudgetLimit"]
        if float(current["BudgetLimit"]["Amount"]) == float(wanted["Amount"]):
            return UNCHANGED, None
        budgets.update_budget(AccountId=acct, NewBudget={**current, "BudgetLimit": wanted})
        return UPDATED, None

    plan.step(
        f"budget {name} ({request['Budget']['BudgetLimit']['Amount']} USD/month, email alert)",
        apply,
        request=request,
    )
