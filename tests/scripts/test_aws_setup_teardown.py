"""`gen3d setup` and `gen3d teardown` against a real moto server."""

from __future__ import annotations

import json

import boto3
import pytest

from gen3d.aws.clients import TAG_KEY
from gen3d.cli.main import main

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
BUCKET = "gen3d-t-123456789012-us-east-1"  # default name: gen3d-NAME-ACCOUNT-REGION


def setup_args(name: str = "t", *extra: str) -> list[str]:
    return [
        "setup",
        "--name",
        name,
        "--budget-usd",
        "40",
        "--budget-email",
        "ops@example.com",
        *extra,
    ]


@pytest.mark.slow  # a second or more on 2 cores: whole CLI runs through botocore
def test_setup_bucket_security_reads_back(aws, capsys):
    assert (
        main(setup_args("t", "--ia-days", "45", "--glacier-days", "120", "--expire-days", "400"))
        == 0
    )
    s3 = boto3.client("s3")
    block = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    (rule,) = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    (statement,) = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])["Statement"]
    assert statement["Effect"] == "Deny" and statement["Principal"] == "*"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert set(statement["Resource"]) == {f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"}
    rules = s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    # request data only (uploads and async inputs/results); never the whole bucket, which
    # would put a model artifact there into GLACIER, where SageMaker cannot read it
    assert sorted(r["Filter"]["Prefix"] for r in rules) == ["async/", "input/"]
    for lifecycle in rules:
        assert [(t["Days"], t["StorageClass"]) for t in lifecycle["Transitions"]] == [
            (45, "STANDARD_IA"),
            (120, "GLACIER"),
        ]
        assert lifecycle["Expiration"]["Days"] == 400
    assert s3.get_bucket_tagging(Bucket=BUCKET)["TagSet"] == [{"Key": TAG_KEY, "Value": "t"}]


def test_setup_roles_are_scoped_to_the_deployment(aws, capsys):
    assert main(setup_args()) == 0
    out = capsys.readouterr().out
    assert "arn:aws:iam::123456789012:role/gen3d-t-sagemaker" in out
    iam = boto3.client("iam")
    trust = iam.get_role(RoleName="gen3d-t-sagemaker")["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    policy = iam.get_role_policy(RoleName="gen3d-t-sagemaker", PolicyName="gen3d-least-privilege")[
        "PolicyDocument"
    ]
    resources = {r for s in policy["Statement"] for r in s["Resource"]}
    unscoped = {a for s in policy["Statement"] if s["Resource"] == ["*"] for a in s["Action"]}
    # only calls AWS cannot scope to a resource use "*"
    assert unscoped == {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}
    assert f"arn:aws:s3:::{BUCKET}/*" in resources
    for flavor in ("cpu", "gpu", "sam3d"):  # where `make push` pushes each flavor
        assert f"arn:aws:ecr:us-east-1:123456789012:repository/gen3d-{flavor}" in resources
    assert any(
        r.startswith("arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/t")
        for r in resources
    )
    trigger = iam.get_role_policy(
        RoleName="gen3d-t-upload-trigger", PolicyName="gen3d-least-privilege"
    )["PolicyDocument"]
    actions = {a for s in trigger["Statement"] for a in s["Action"]}
    assert "sagemaker:InvokeEndpointAsync" in actions and "s3:PutObject" not in actions
    for role in ("gen3d-t-sagemaker", "gen3d-t-upload-trigger"):
        assert iam.list_role_tags(RoleName=role)["Tags"] == [{"Key": TAG_KEY, "Value": "t"}]


def test_setup_budget_alerts_by_email(aws):
    assert main(setup_args()) == 0
    budgets = boto3.client("budgets")
    budget = budgets.describe_budget(AccountId="123456789012", BudgetName="gen3d-t")["Budget"]
    assert float(budget["BudgetLimit"]["Amount"]) == 40.0 and budget["TimeUnit"] == "MONTHLY"
    notifications = budgets.describe_notifications_for_budget(
        AccountId="123456789012", BudgetName="gen3d-t"
    )["Notifications"]
    assert {(n["NotificationType"], n["Threshold"]) for n in notifications} == {
        ("ACTUAL", 80.0),
        ("FORECASTED", 100.0),
    }
    # (moto does not implement DescribeSubscribersForNotification; the subscriber list is
    # in the request body, which test_budget_request_validates checks)


def test_budget_request_validates():
    from aws_requests import validate_strictly as validate_request

    from gen3d.aws.budget import budget_request

    request = budget_request("t", "123456789012", 40, "ops@example.com")
    validate_request("budgets", "CreateBudget", request)
    for entry in request["NotificationsWithSubscribers"]:
        assert entry["Subscribers"] == [{"SubscriptionType": "EMAIL", "Address": "ops@example.com"}]


def test_second_setup_changes_nothing(aws, capsys):
    assert main(setup_args()) == 0
    capsys.readouterr()
    assert main(setup_args()) == 0
    assert "already up to date, nothing changed" in capsys.readouterr().out


def test_setup_dry_run_prints_policies_and_calls_nothing(aws, capsys):
    assert main(setup_args("t", "--dry-run")) == 0
    out = capsys.readouterr().out
    assert "ecr:BatchGetImage" in out and "aws:SecureTransport" in out
    assert "nothing was called" in out
    assert boto3.client("s3").list_buckets()["Buckets"] == []
    assert boto3.client("iam").list_roles()["Roles"] == []


def test_setup_refuses_a_bad_lifecycle(aws, capsys):
    assert main(setup_args("t", "--ia-days", "10")) == 1
    assert "at least 30" in capsys.readouterr().err


# ----------------------------------------------------------------------------- teardown


def remaining_tagged(name: str) -> list[str]:
    """Every resource still tagged gen3d:deployment=NAME, read independently of our code:
    the tagging API, plus the services it does not cover in the emulator."""
    tagging = boto3.client("resourcegroupstaggingapi")
    found = [
        r["ResourceARN"]
        for page in tagging.get_paginator("get_resources").paginate(
            TagFilters=[{"Key": TAG_KEY, "Values": [name]}]
        )
        for r in page["ResourceTagMappingList"]
    ]
    iam = boto3.client("iam")
    found += [
        r["Arn"]
        for r in iam.list_roles()["Roles"]
        if {"Key": TAG_KEY, "Value": name} in iam.list_role_tags(RoleName=r["RoleName"])["Tags"]
    ]
    found += [
        f"scalable-target {t['ResourceId']}"
        for t in boto3.client("application-autoscaling").describe_scalable_targets(
            ServiceNamespace="sagemaker"
        )["ScalableTargets"]
        if f"/{name}/" in t["ResourceId"]
    ]
    budgets = boto3.client("budgets").describe_budgets(AccountId="123456789012")
    found += [
        b["BudgetName"] for b in budgets.get("Budgets", []) if b["BudgetName"] == f"gen3d-{name}"
    ]
    return found


def deploy_async(name: str, *extra: str) -> int:
    return main(
        [
            "deploy",
            "--name",
            name,
            "--mode",
            "async",
            "--image",
            f"{ECR}/gen3d-gpu:1",
            "--role",
            f"arn:aws:iam::123456789012:role/gen3d-{name}-sagemaker",
            "--poll",
            "0.01",
            "--notify-email",
            "ops@example.com",
            *extra,
        ]
    )


@pytest.fixture
def full_deployment(aws) -> None:
    """setup + async deploy with the upload trigger + a batch job, all for 't'."""
    assert main(setup_args()) == 0
    assert (
        deploy_async(
            "t", "--upload-trigger-role", "arn:aws:iam::123456789012:role/gen3d-t-upload-trigger"
        )
        == 0
    )
    assert (
        main(
            [
                "batch",
                "--name",
                "t",
                "--input",
                f"s3://{BUCKET}/batch/in/",
                "--output",
                f"s3://{BUCKET}/batch/out/",
                # the endpoint's ml.g4dn with the CUDA 13 gpu image is refused for batch
                # (no batch AMI has a driver that new); a CPU instance runs it
                "--instance-type",
                "ml.m5.large",
            ]
        )
        == 0
    )


@pytest.mark.slow  # a second or more on 2 cores: whole CLI runs through botocore
def test_teardown_leaves_nothing_tagged(full_deployment, capsys):
    before = remaining_tagged("t")
    assert any(":endpoint/t" in r for r in before) and any(":function:" in r for r in before)
    assert any("scalable-target" in r for r in before) and "gen3d-t" in before
    capsys.readouterr()
    assert main(["teardown", "--name", "t", "--poll", "0.01"]) == 0
    out = capsys.readouterr().out
    assert remaining_tagged("t") == []
    # dependency order: alarms and autoscaling before the endpoint, endpoint before its
    # config and model, the bucket's notification before the Lambda
    order = [
        line.split("  ", 2)[-1].strip()
        for line in out.splitlines()
        if line.strip().startswith("deleted")
    ]
    position = {
        kind: next(i for i, s in enumerate(order) if s.startswith(kind))
        for kind in (
            "alarm",
            "scalable target",
            "Lambda",
            "endpoint t",
            "endpoint config",
            "model",
            "S3 bucket",
            "IAM role",
            "budget",
        )
    }
    assert position["alarm"] < position["scalable target"] < position["endpoint t"]
    assert position["endpoint t"] < position["endpoint config"] < position["model"]
    assert position["S3 bucket"] < position["IAM role"]
    assert boto3.client("sagemaker").list_endpoints()["Endpoints"] == []
    assert boto3.client("cloudwatch").describe_alarms()["MetricAlarms"] == []
    assert boto3.client("lambda").list_functions()["Functions"] == []
    assert boto3.client("s3").list_buckets()["Buckets"] == []


@pytest.mark.slow  # a second or more on 2 cores: whole CLI runs through botocore
def test_second_teardown_changes_nothing(full_deployment, capsys):
    assert main(["teardown", "--name", "t", "--poll", "0.01"]) == 0
    capsys.readouterr()
    assert main(["teardown", "--name", "t", "--poll", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "nothing tagged gen3d:deployment=t remains" in out and "deleted" not in out


@pytest.mark.slow  # a second or more on 2 cores: whole CLI runs through botocore
def test_teardown_touches_no_other_deployment(aws):
    assert deploy_async("t") == 0
    assert deploy_async("t2") == 0  # a name that starts like the first
    assert main(["teardown", "--name", "t", "--poll", "0.01"]) == 0
    assert remaining_tagged("t") == []
    other = remaining_tagged("t2")
    assert any(":endpoint/t2" in r for r in other)
    assert (
        boto3.client("cloudwatch")
        .describe_alarms()["MetricAlarms"][0]["AlarmName"]
        .startswith("t2-")
    )


@pytest.mark.slow  # a second or more on 2 cores: whole CLI runs through botocore
def test_teardown_keep_bucket_keeps_only_the_bucket(aws, capsys):
    assert deploy_async("t") == 0
    assert main(["teardown", "--name", "t", "--keep-bucket", "--poll", "0.01"]) == 0
    assert remaining_tagged("t") == [f"arn:aws:s3:::{BUCKET}"]
    assert "kept (tagged) bucket(s)" in capsys.readouterr().out


def test_teardown_dry_run_lists_the_order_and_calls_nothing(aws, capsys):
    assert deploy_async("t") == 0
    before = remaining_tagged("t")
    capsys.readouterr()
    assert main(["teardown", "--name", "t", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "CloudWatch alarms" in out and "nothing was called" in out
    assert remaining_tagged("t") == before
