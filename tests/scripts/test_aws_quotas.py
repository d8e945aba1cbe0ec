"""Service Quotas before a deploy or batch job creates anything, `gen3d setup
--request-quota`, and SageMaker's ResourceLimitExceeded turned into the same guidance.

SageMaker, S3, SNS and the rest are the moto server; Service Quotas, which moto does not
implement, is the loopback stand-in of tests/quota_service.py (its wire protocol, reached
through AWS_ENDPOINT_URL_SERVICE_QUOTAS) or botocore's Stubber. Strict request validation
(tests/aws_requests.py) checks every request either way.
"""

from __future__ import annotations

import datetime as dt

import boto3
import pytest
import quota_service
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from gen3d.aws import quotas
from gen3d.aws.clients import AwsClients
from gen3d.aws.deploy import DeployOptions, deploy
from gen3d.aws.endpoint_spec import DeploySpec
from gen3d.aws.errors import AwsCommandError
from gen3d.aws.plan import Plan
from gen3d.cli.main import main

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
ROLE = "arn:aws:iam::123456789012:role/gen3d-t-sagemaker"
G4DN = "ml.g4dn.xlarge for endpoint usage"


def deploy_args(name: str, *extra: str) -> list[str]:
    return [
        *("deploy", "--name", name, "--mode", "async", "--image", f"{ECR}/gen3d-gpu:1"),
        *("--role", ROLE, "--poll", "0.01", "--timeout", "30", *extra),
    ]


def nothing_made() -> None:
    sm = boto3.client("sagemaker")
    assert sm.list_models()["Models"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert sm.list_endpoints()["Endpoints"] == []
    assert boto3.client("s3").list_buckets()["Buckets"] == []
    assert boto3.client("sns").list_topics()["Topics"] == []
    assert boto3.client("logs").describe_log_groups()["logGroups"] == []
    assert boto3.client("cloudwatch").describe_alarms()["MetricAlarms"] == []


def test_a_zero_quota_stops_the_deploy_before_anything_is_made(aws, capsys):
    quota_service.STATE.defaults[G4DN] = 0  # a new account: only the AWS default, 0
    assert main(deploy_args("t")) == 1
    err = capsys.readouterr().err
    assert f"quota '{G4DN}' ({quota_service.quota_code(G4DN)}), which is 0 in us-east-1" in err
    assert "`gen3d setup --request-quota ml.g4dn.xlarge=1 --region us-east-1`" in err
    assert "nothing was created" in err
    nothing_made()


def test_an_applied_quota_overrides_the_default_and_enough_goes_ahead(aws, capsys):
    quota_service.STATE.defaults[G4DN] = 0
    quota_service.STATE.applied[G4DN] = 2  # raised for this account
    assert main(deploy_args("t")) == 0
    out = capsys.readouterr().out
    assert f"quota '{G4DN}' and its use (needs 1): 2 ({quota_service.quota_code(G4DN)})" in out
    assert boto3.client("sagemaker").describe_endpoint(EndpointName="t")["EndpointStatus"] == (
        "InService"
    )


def test_enough_quota_but_in_use_elsewhere_is_refused(aws, capsys):
    quota_service.STATE.applied[G4DN] = 2
    assert main(deploy_args("other")) == 0  # holds 1 ml.g4dn.xlarge
    # (other endpoints of other types do not count)
    quota_service.STATE.applied[G4DN] = 1
    capsys.readouterr()
    assert main(deploy_args("t")) == 1
    err = capsys.readouterr().err
    assert "which is 1 in us-east-1 with 1 in use elsewhere" in err
    assert "--request-quota ml.g4dn.xlarge=2 " in err  # what is in use + what is needed
    assert [e["EndpointName"] for e in boto3.client("sagemaker").list_endpoints()["Endpoints"]] == [
        "other"
    ]


def test_a_redeploy_does_not_count_its_own_instances(aws):
    quota_service.STATE.applied[G4DN] = 1
    assert main(deploy_args("t")) == 0
    assert main(deploy_args("t")) == 0  # its own instance is not "in use elsewhere"


def test_an_autoscaling_maximum_above_the_quota_only_warns(aws, capsys):
    quota_service.STATE.applied[G4DN] = 1
    assert main(deploy_args("t", "--max-instances", "3")) == 0
    out = capsys.readouterr().out
    assert "needs 3 instance(s)" in out and "autoscaling will stop there" in out


def test_serverless_checks_the_concurrency_quota(aws, capsys):
    quota_service.STATE.applied[quotas.SERVERLESS_QUOTA] = 4
    args = deploy_args("s", "--max-concurrency", "5")
    args[args.index("--mode") + 1] = "serverless"
    args[args.index("--image") + 1] = "registry.example.com/gen3d-cpu:1"
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "needs 5 concurrency of quota 'Maximum total concurrency" in err
    assert "--request-quota serverless=5" in err
    nothing_made()


def test_batch_checks_the_transform_job_quota(aws, capsys):
    name = "ml.m5.large for transform job usage"
    quota_service.STATE.applied[name] = 0
    args = ["batch", "--name", "t", "--model", "m", "--input", "s3://b/in/"]
    args += ["--output", "s3://b/out/", "--instance-type", "ml.m5.large"]
    sm = boto3.client("sagemaker")
    sm.create_model(
        ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": f"{ECR}/gen3d-cpu:1"}
    )
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"quota '{name}'" in err and "--quota-usage transform" in err
    assert sm.list_transform_jobs()["TransformJobSummaries"] == []


def test_the_dry_run_shows_the_preflight(aws, capsys):
    assert main([*deploy_args("t"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would read    quota '{G4DN}' and its use (needs 1)" in out
    assert "would call    service-quotas ListServiceQuotas" in out
    assert out.index("quota") < out.index("would ensure  S3 bucket")  # before anything


# ------------------------------------------------------------- --request-quota


def test_request_quota_files_the_request_by_the_quotas_code(aws, capsys):
    quota_service.STATE.defaults["ml.g5.xlarge for endpoint usage"] = 0
    quota_service.STATE.defaults["ml.g5.xlarge for transform job usage"] = 0
    assert main(["setup", "--request-quota", "ml.g5.xlarge=2"]) == 0
    assert main(["setup", "--request-quota", "ml.g5.xlarge=1", "--quota-usage", "transform"]) == 0
    assert quota_service.STATE.requests == [
        {
            "ServiceCode": "sagemaker",
            "QuotaCode": quota_service.quota_code("ml.g5.xlarge for endpoint usage"),
            "DesiredValue": 2.0,
        },
        {
            "ServiceCode": "sagemaker",
            "QuotaCode": quota_service.quota_code("ml.g5.xlarge for transform job usage"),
            "DesiredValue": 1.0,
        },
    ]
    assert "(PENDING)" in capsys.readouterr().out


def test_request_quota_refuses_what_it_cannot_parse_or_find(aws, capsys):
    assert main(["setup", "--request-quota", "g5=1"]) == 1
    assert "expected TYPE=N" in capsys.readouterr().err
    assert main(["setup", "--request-quota", "ml.g5.xlarge=1"]) == 1  # not listed at all
    assert "lists no quota 'ml.g5.xlarge for endpoint usage'" in capsys.readouterr().err
    assert quota_service.STATE.requests == []
    assert main(["setup"]) == 2  # neither --name nor --request-quota


def test_request_increase_at_the_stubber_seam():
    """The same request through botocore's Stubber: the expected parameters are exactly
    what is sent, after strict validation."""
    clients = AwsClients("us-east-1")
    stub = Stubber(clients.service_quotas)
    listed = {
        "ServiceCode": "sagemaker",
        "QuotaCode": "L-1928E07B",
        "QuotaName": "ml.g5.xlarge for endpoint usage",
        "Value": 0.0,
    }
    stub.add_response("list_service_quotas", {"Quotas": [listed]}, {"ServiceCode": "sagemaker"})
    stub.add_response(
        "request_service_quota_increase",
        {"RequestedQuota": {"Id": "r1", "Status": "PENDING"}},
        {"ServiceCode": "sagemaker", "QuotaCode": "L-1928E07B", "DesiredValue": 1.0},
    )
    lines: list[str] = []
    with stub:
        quotas.request_increase(Plan(out=lines.append), clients, "ml.g5.xlarge", 1, "endpoint")
    stub.assert_no_pending_responses()
    assert any("r1 (PENDING)" in line for line in lines)


# ------------------------------------------------------ ResourceLimitExceeded


def _limit_exceeded(**_: object) -> tuple[AWSResponse, dict]:
    # what botocore hands back for an error answer (the shape Stubber queues)
    return AWSResponse(None, 400, {}, None), {
        "Error": {
            "Code": "ResourceLimitExceeded",
            "Message": "The account-level service limit 'ml.g4dn.xlarge for endpoint usage' "
            "is 0 Instances, with current utilization of 0 Instances",
        },
        "ResponseMetadata": {"HTTPStatusCode": 400},
    }


def test_resource_limit_exceeded_becomes_guidance_and_a_rerun_finishes(aws):
    quota_service.STATE.applied[G4DN] = 1  # the preflight passes; SageMaker still refuses
    spec = DeploySpec("t", "async", f"{ECR}/gen3d-gpu:1", None, ROLE)
    options = DeployOptions(poll_s=0.01, timeout_s=30)
    clients = AwsClients()
    clients.sagemaker.meta.events.register("before-call.sagemaker.CreateEndpoint", _limit_exceeded)
    lines: list[str] = []
    with pytest.raises(quotas.QuotaError) as refused:
        deploy(spec, clients, Plan(out=lines.append), options)
    message = str(refused.value)
    assert message.startswith("SageMaker refused CreateEndpoint for lack of quota")
    assert "`gen3d setup --request-quota ml.g4dn.xlarge=1 --region us-east-1`" in message
    assert "gen3d teardown --name t" in message
    assert not any("could not restore autoscaling" in line for line in lines)
    sm = boto3.client("sagemaker")
    assert len(sm.list_endpoint_configs()["EndpointConfigs"]) == 1  # kept for the re-run
    # once the quota is there, the same deploy goes on from what was kept
    assert main(deploy_args("t")) == 0
    assert sm.describe_endpoint(EndpointName="t")["EndpointStatus"] == "InService"


def test_other_errors_are_not_quota_guidance():
    exc_args = _limit_exceeded()[1]
    exc_args["Error"]["Code"] = "ValidationException"
    need = quotas.Need(G4DN, "ml.g4dn.xlarge", "endpoint", 1)
    error = quotas.limit_exceeded(ClientError(exc_args, "CreateEndpoint"), need, "r", "")
    assert not isinstance(error, quotas.QuotaError) and isinstance(error, AwsCommandError)


def test_transform_usage_counts_running_jobs_of_the_type(aws):
    """in_use reads what SageMaker reports; moto finishes jobs at once, so the running job
    comes from the Stubber."""
    clients = AwsClients()
    stub = Stubber(clients.sagemaker)
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    stub.add_response(
        "list_transform_jobs",
        {
            "TransformJobSummaries": [
                {
                    "TransformJobName": "j",
                    "TransformJobArn": "arn:aws:sagemaker:us-east-1:123456789012:transform-job/j",
                    "CreationTime": now,
                    "TransformJobStatus": "InProgress",
                }
            ]
        },
        {"StatusEquals": "InProgress"},
    )
    stub.add_response(
        "describe_transform_job",
        {
            "TransformJobName": "j",
            "TransformJobArn": "arn:aws:sagemaker:us-east-1:123456789012:transform-job/j",
            "TransformJobStatus": "InProgress",
            "ModelName": "m",
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/i/"}}
            },
            "TransformResources": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 2},
            "CreationTime": now,
        },
        {"TransformJobName": "j"},
    )
    need = quotas.Need("ml.g5.xlarge for transform job usage", "ml.g5.xlarge", "transform", 1)
    with stub:
        assert quotas.in_use(clients.sagemaker, need) == 2
