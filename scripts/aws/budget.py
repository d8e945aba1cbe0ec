"""A monthly cost budget with an email alert at a share of the limit (actual spend) and at
the full limit (forecast), counting only the deployment's own (tagged) spend.

The filter uses the cost-allocation tag gen3d:deployment, which must be activated once in
Billing (Cost allocation tags) before AWS counts costs under it; until then the budget
sees nothing. Format from the AWS CLI's create-budget example: CostFilters
{"TagKeyValue": ["user:KEY$VALUE"]} (user-defined tags carry the `user:` prefix, AWS
Billing docs, cost-alloc-tags.html).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from gen3d.aws.clients import TAG_KEY, tag_list
from gen3d.aws.plan import CREATED, UNCHANGED, UPDATED, ApiCall, Plan


def budget_name(deployment: str) -> str:
    return f"gen3d-{deployment}"


def cost_filters(deployment: str) -> dict[str, list[str]]:
    return {"TagKeyValue": [f"user:{TAG_KEY}${deployment}"]}


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
            "CostFilters": cost_filters(deployment),
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
        wanted = req["Budget"]
        if (
            float(current["BudgetLimit"]["Amount"]) == float(wanted["BudgetLimit"]["Amount"])
            and current.get("CostFilters") == wanted["CostFilters"]
        ):
            return UNCHANGED, None
        # (an older budget of this name counted the whole account: the filter fixes that)
        budgets.update_budget(
            AccountId=acct,
            NewBudget={
                **current,
                "BudgetLimit": wanted["BudgetLimit"],
                "CostFilters": wanted["CostFilters"],
            },
        )
        return UPDATED, None

    plan.step(
        f"budget {name} ({request['Budget']['BudgetLimit']['Amount']} USD/month, email alert, "
        f"only costs tagged {TAG_KEY})",
        apply,
        calls=[ApiCall("budgets", "CreateBudget", request)],
    )
