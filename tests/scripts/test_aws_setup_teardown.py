"""`gen3d setup` and `gen3d teardown` against a real moto server."""

from __future__ import annotations

import datetime as dt
import json

import boto3
import pytest
from aws_requests import dry_run_calls, validate_strictly
from botocore.stub import Stubber

from gen3d.aws.clients import TAG_KEY, AwsClients
from gen3d.aws.teardown import _Finder
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
    assert f"arn:aws:s3:::{BUCKET}/input/*" in resources
    assert f"arn:aws:s3:::{BUCKET}/*" not in resources
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


def test_setup_dry_run_policies_grant_only_request_prefixes_and_name_their_source(aws, capsys):
    """The execution role reads the request prefixes and the model's key, writes the
    result prefixes, nothing else in S3; the trigger role reads nothing in S3 (SageMaker
    reads the upload); each trust policy names the account and the resource."""
    model = "s3://models-bucket/gen3d/model.tar.gz"
    assert main(setup_args("t", "--dry-run", "--model-data", model)) == 0
    calls = list(dry_run_calls(capsys.readouterr().out))
    for service, operation, body in calls:
        if service == "iam":  # the others hold the dry run's "<account-id>" placeholder
            validate_strictly(service, operation, body)
    (bucket,) = {b["Bucket"] for _, op, b in calls if op == "CreateBucket"}
    (account,) = {b["AccountId"] for _, op, b in calls if op == "CreateBudget"}
    policies = {
        b["RoleName"]: json.loads(b["PolicyDocument"])
        for _, op, b in calls
        if op == "PutRolePolicy"
    }
    trusts = {
        b["RoleName"]: json.loads(b["AssumeRolePolicyDocument"])
        for _, op, b in calls
        if op == "CreateRole"
    }

    def s3_grants(policy: dict) -> dict[str, set[str]]:
        grants: dict[str, set[str]] = {}
        for statement in policy["Statement"]:
            for action in statement["Action"]:
                if action.startswith("s3:"):
                    grants.setdefault(action, set()).update(statement["Resource"])
        return grants

    objects = f"arn:aws:s3:::{bucket}"
    assert s3_grants(policies["gen3d-t-sagemaker"]) == {
        "s3:GetObject": {
            f"{objects}/input/*",
            f"{objects}/async/input/*",
            f"{objects}/batch/in/*",
            "arn:aws:s3:::models-bucket/gen3d/model.tar.gz",
        },
        "s3:PutObject": {
            f"{objects}/async/output/*",
            f"{objects}/async/failure/*",
            f"{objects}/batch/out/*",
        },
        "s3:ListBucket": {objects},
    }
    (listing,) = [
        s for s in policies["gen3d-t-sagemaker"]["Statement"] if s["Action"] == ["s3:ListBucket"]
    ]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["batch/in/*"]}}
    assert s3_grants(policies["gen3d-t-upload-trigger"]) == {}
    sources = {
        "gen3d-t-sagemaker": f"arn:aws:sagemaker:us-east-1:{account}:*",
        "gen3d-t-upload-trigger": f"arn:aws:lambda:us-east-1:{account}:function:gen3d-t-upload",
    }
    for role, source in sources.items():
        (statement,) = trusts[role]["Statement"]
        assert statement["Condition"] == {
            "StringEqualsIfExists": {"aws:SourceAccount": account},
            "ArnLikeIfExists": {"aws:SourceArn": source},
        }


def test_a_second_setup_brings_an_old_trust_policy_in_line(aws, capsys):
    iam = boto3.client("iam")
    old = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sagemaker.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    iam.create_role(RoleName="gen3d-t-sagemaker", AssumeRolePolicyDocument=json.dumps(old))
    assert main(setup_args()) == 0
    trust = iam.get_role(RoleName="gen3d-t-sagemaker")["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Condition"]["StringEqualsIfExists"] == {
        "aws:SourceAccount": "123456789012"
    }


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


def test_teardown_dry_run_lists_every_resource_and_deletes_nothing(full_deployment, capsys):
    before = remaining_tagged("t")
    capsys.readouterr()
    assert main(["teardown", "--name", "t", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "CloudWatch alarms" in out and "nothing was deleted" in out
    for resource in (
        "would delete alarm t-gen3d-failure-rate",
        "would delete CloudWatch dashboard gen3d-t",
        "would delete endpoint t",
        "would delete Lambda gen3d-t-upload",
        "would delete log group /aws/sagemaker/Endpoints/t",
        "would delete log group /aws/lambda/gen3d-t-upload",
        f"would delete S3 bucket {BUCKET}",
        "would delete IAM role gen3d-t-sagemaker",
        "would delete budget gen3d-t",
        "would untag transform job t-batch-",
    ):
        assert resource in out, resource
    assert remaining_tagged("t") == before


def log_groups() -> list[str]:
    return [g["logGroupName"] for g in boto3.client("logs").describe_log_groups()["logGroups"]]


def test_teardown_leaves_no_log_group(full_deployment):
    # the upload Lambda's group is made by deploy, tagged and with a retention
    logs = boto3.client("logs")
    (trigger,) = logs.describe_log_groups(logGroupNamePrefix="/aws/lambda/gen3d-t-upload")[
        "logGroups"
    ]
    assert trigger["retentionInDays"] == 30
    assert logs.list_tags_log_group(logGroupName=trigger["logGroupName"])["tags"] == {TAG_KEY: "t"}
    assert main(["teardown", "--name", "t", "--poll", "0.01"]) == 0
    assert log_groups() == []


def test_teardown_removes_an_untagged_lambda_group_of_an_older_deploy(aws):
    assert deploy_async("t") == 0
    # what Lambda itself made before deploy made the group: no tag, no retention
    boto3.client("logs").create_log_group(logGroupName="/aws/lambda/gen3d-t-upload")
    boto3.client("logs").create_log_group(logGroupName="/aws/lambda/gen3d-t2-upload")
    assert main(["teardown", "--name", "t", "--poll", "0.01"]) == 0
    assert log_groups() == ["/aws/lambda/gen3d-t2-upload"]  # another deployment's stays


def push_image(repository: str) -> None:
    ecr = boto3.client("ecr")
    ecr.create_repository(repositoryName=repository)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    }
    ecr.put_image(repositoryName=repository, imageManifest=json.dumps(manifest), imageTag="1")


def repositories() -> list[str]:
    return sorted(
        r["repositoryName"] for r in boto3.client("ecr").describe_repositories()["repositories"]
    )


def test_teardown_deletes_ecr_repositories_only_with_images(aws, capsys):
    assert deploy_async("t") == 0
    push_image("gen3d-gpu")
    push_image("someone-else")
    assert main(["teardown", "--name", "t", "--poll", "0.01"]) == 0
    assert repositories() == ["gen3d-gpu", "someone-else"]  # kept by default
    capsys.readouterr()
    assert main(["teardown", "--name", "t", "--images", "--dry-run"]) == 0
    assert "would delete ECR repository gen3d-gpu and its 1 image" in capsys.readouterr().out
    assert repositories() == ["gen3d-gpu", "someone-else"]
    assert main(["teardown", "--name", "t", "--images", "--poll", "0.01"]) == 0
    assert repositories() == ["someone-else"]


def test_teardown_stops_a_running_transform_job_and_waits_until_stopped(aws):
    """moto finishes transform jobs at once: the running job is the Stubber's. Its bucket
    and role go after this step, so the step must not return while the job is Stopping."""
    clients = AwsClients()
    stub = Stubber(clients.sagemaker)
    arn = "arn:aws:sagemaker:us-east-1:123456789012:transform-job/t-batch-1"
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    stub.add_response(
        "list_transform_jobs",
        {
            "TransformJobSummaries": [
                {
                    "TransformJobName": "t-batch-1",
                    "TransformJobArn": arn,
                    "CreationTime": now,
                    "TransformJobStatus": "InProgress",
                }
            ]
        },
        {"NameContains": "t"},
    )
    stub.add_response("list_tags", {"Tags": [{"Key": TAG_KEY, "Value": "t"}]}, {"ResourceArn": arn})
    stub.add_response("stop_transform_job", {}, {"TransformJobName": "t-batch-1"})
    for status in ("Stopping", "Stopping", "Stopped"):
        stub.add_response(
            "describe_transform_job",
            {
                "TransformJobName": "t-batch-1",
                "TransformJobArn": arn,
                "TransformJobStatus": status,
                "ModelName": "m",
                "TransformInput": {
                    "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/i/"}}
                },
                "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
                "CreationTime": now,
            },
            {"TransformJobName": "t-batch-1"},
        )
    stub.add_response("delete_tags", {}, {"ResourceArn": arn, "TagKeys": [TAG_KEY]})
    progress: list[str] = []
    with stub:
        actions = _Finder(clients, "t").transform_jobs(0.0, 30.0, progress.append)
        assert [summary for summary, _ in actions] == [
            "stop transform job t-batch-1 and wait until stopped",
            "untag transform job t-batch-1 (records cannot be deleted)",
        ]
        for _, act in actions:
            act()
    stub.assert_no_pending_responses()  # every describe was made: it waited for Stopped
    assert progress[-1].strip().startswith("transform job t-batch-1: Stopped")


def test_setup_help_promises_only_what_setup_makes(capsys):
    with pytest.raises(SystemExit):
        main(["setup", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "the ECR repositories and the log groups" not in text
    assert "setup creates neither" in text and "--request-quota" in text
