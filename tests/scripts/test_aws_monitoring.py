"""Dashboard, alarms and blue/green rollback from `gen3d deploy`, against a real moto server."""

from __future__ import annotations

import json

import boto3
import pytest
from aws_requests import MODEL_BUCKET
from aws_requests import validate_strictly as validate_request

from gen3d.aws import alarms
from gen3d.aws.clients import TAG_KEY, AwsClients
from gen3d.aws.dashboard import dashboard_body, dashboard_name
from gen3d.aws.deploy import DeployOptions, deploy
from gen3d.aws.endpoint_spec import DeploySpec
from gen3d.aws.plan import Plan
from gen3d.cli.main import main

ROLE = "arn:aws:iam::123456789012:role/gen3d-t-sagemaker"
ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
GPU_IMAGE, CPU_IMAGE = f"{ECR}/gen3d-gpu:0a1b2c3d", f"{ECR}/gen3d-cpu:0a1b2c3d"
MODEL_DATA = f"s3://{MODEL_BUCKET}/silhouette/model.tar.gz"


def deploy_args(name: str, mode: str, *extra: str) -> list[str]:
    return [
        *("deploy", "--name", name, "--mode", mode, "--image", GPU_IMAGE),
        *("--model-data", MODEL_DATA, "--role", ROLE, "--poll", "0.01", "--timeout", "30"),
        *extra,
    ]


def alarms_by_name() -> dict[str, dict]:
    return {a["AlarmName"]: a for a in boto3.client("cloudwatch").describe_alarms()["MetricAlarms"]}


def tags(arn: str) -> dict[str, str]:
    found = boto3.client("cloudwatch").list_tags_for_resource(ResourceARN=arn)["Tags"]
    return {t["Key"]: t["Value"] for t in found}


def metric_rows(body: dict) -> list[list]:
    return [
        row for w in body["widgets"] if w["type"] == "metric" for row in w["properties"]["metrics"]
    ]


def test_async_deploy_makes_a_dashboard_and_four_alarms_to_the_error_topic(model_artifact):
    assert main(deploy_args("t", "async")) == 0
    cw = boto3.client("cloudwatch")
    body = json.loads(cw.get_dashboard(DashboardName="gen3d-t")["DashboardBody"])
    rows = metric_rows(body)
    names = {row[1] for row in rows}
    assert {"Invocations", "Invocation4XXErrors", "Invocation5XXErrors", "ModelLatency"} <= names
    assert {"OverheadLatency", "QueueTime", "InferenceTime", "BatchSize", "OOMSplits"} <= names
    assert {"GPUUtilization", "GPUMemoryUtilization", "CPUUtilization"} <= names
    assert {"ApproximateBacklogSize", "ApproximateAgeOfOldestRequest"} <= names
    for row in rows:  # every metric is this endpoint's (EndpointName or Deployment = t)
        dims = dict(zip(row[2:-1:2], row[3::2], strict=False))
        assert dims.get("EndpointName", dims.get("Deployment")) == "t", row

    error_topic = next(
        t["TopicArn"]
        for t in boto3.client("sns").list_topics()["Topics"]
        if t["TopicArn"].endswith(":gen3d-t-error")
    )
    found = alarms_by_name()
    ours = {n: a for n, a in found.items() if n.startswith("t-gen3d-")}
    assert set(ours) == {
        "t-gen3d-5xx-rate",
        "t-gen3d-gpu-memory",
        "t-gen3d-backlog-stuck",
        "t-gen3d-oldest-request",
    }
    for alarm in ours.values():
        assert alarm["AlarmActions"] == [error_topic]
        assert tags(alarm["AlarmArn"]) == {TAG_KEY: "t"}
    assert ours["t-gen3d-gpu-memory"]["Threshold"] == alarms.GPU_MEMORY_PERCENT
    assert ours["t-gen3d-oldest-request"]["Threshold"] == 900  # async deadline
    rate = {m["Id"]: m for m in ours["t-gen3d-5xx-rate"]["Metrics"]}
    assert rate["errors"]["MetricStat"]["Metric"]["MetricName"] == "Invocation5XXErrors"
    assert "100 * errors / invocations" in rate["rate"]["Expression"]

    model = boto3.client("sagemaker").list_models()["Models"][0]["ModelName"]
    env = boto3.client("sagemaker").describe_model(ModelName=model)["PrimaryContainer"]
    assert env["Environment"]["GEN3D_DEPLOYMENT"] == "t"  # the container's metric dimension


@pytest.mark.slow  # a second or more on 2 cores: whole CLI runs through botocore
def test_rerun_changes_nothing_and_a_changed_spec_updates(model_artifact, capsys):
    assert main(deploy_args("t", "async")) == 0
    cw = boto3.client("cloudwatch")
    stamps = {n: a["AlarmConfigurationUpdatedTimestamp"] for n, a in alarms_by_name().items()}
    capsys.readouterr()
    assert main(deploy_args("t", "async")) == 0
    out = capsys.readouterr().out
    assert "unchanged  CloudWatch dashboard gen3d-t" in out
    assert "unchanged  CloudWatch alarm t-gen3d-5xx-rate" in out
    assert "created" not in out and "updated" not in out
    assert {n: a["AlarmConfigurationUpdatedTimestamp"] for n, a in alarms_by_name().items()} == (
        stamps
    )
    # a different deadline is a different oldest-request alarm: updated in place, alone
    # (through ensure_alarms: a changed model environment would also update the endpoint,
    # which moto 5.2.5 does not implement)
    spec = DeploySpec(
        "t", "async", GPU_IMAGE, MODEL_DATA, ROLE, extra_env={"GEN3D_REQUEST_TIMEOUT_S": "300"}
    )
    topic = alarms_by_name()["t-gen3d-5xx-rate"]["AlarmActions"][0]
    plan = Plan(out=lambda _: None)
    alarms.ensure_alarms(plan, cw, spec, topic)
    assert plan.changes == [("updated", "CloudWatch alarm t-gen3d-oldest-request")]
    assert alarms_by_name()["t-gen3d-oldest-request"]["Threshold"] == 300
    assert len(cw.list_dashboards()["DashboardEntries"]) == 1


def test_realtime_gets_blue_green_rollback_on_the_5xx_alarm(model_artifact):
    clients = AwsClients()
    sent: list[dict] = []
    clients.sagemaker.meta.events.register(  # what boto3 sends, read at boto3's own hook
        "provide-client-params.sagemaker.CreateEndpoint", lambda params, **_: sent.append(params)
    )
    spec = DeploySpec("r", "realtime", CPU_IMAGE, MODEL_DATA, ROLE, instance_type="ml.m5.large")
    deploy(spec, clients, Plan(out=lambda _: None), DeployOptions(poll_s=0.01, timeout_s=30))
    (request,) = sent
    config = request["DeploymentConfig"]
    assert config["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": "r-gen3d-5xx-rate"}]}
    assert config["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "ALL_AT_ONCE"
    validate_request("sagemaker", "CreateEndpoint", request)
    found = alarms_by_name()
    assert set(found) == {"r-gen3d-5xx-rate"}  # a CPU instance: no GPU alarm, not async
    topic = found["r-gen3d-5xx-rate"]["AlarmActions"][0]
    assert topic.endswith(":gen3d-r-error")  # made for this realtime deployment
    sns = boto3.client("sns")
    assert {
        t["Key"]: t["Value"] for t in sns.list_tags_for_resource(ResourceArn=topic)["Tags"]
    } == {TAG_KEY: "r"}


@pytest.mark.slow  # a second or more on 2 cores: whole CLI runs through botocore
def test_teardown_removes_dashboard_alarms_and_topic_only_of_its_deployment(model_artifact):
    assert main(deploy_args("t", "realtime")) == 0  # ml.g4dn.xlarge: GPU alarm too
    cw = boto3.client("cloudwatch")
    # a dashboard named like ours but not made by gen3d deploy (no marker) is never deleted
    cw.put_dashboard(DashboardName="gen3d-u", DashboardBody=json.dumps({"widgets": []}))
    assert main(["teardown", "--name", "u", "--poll", "0.01"]) == 0
    assert main(["teardown", "--name", "t", "--poll", "0.01"]) == 0
    assert [d["DashboardName"] for d in cw.list_dashboards()["DashboardEntries"]] == ["gen3d-u"]
    assert alarms_by_name() == {}
    assert not any(
        ":gen3d-t-" in t["TopicArn"] for t in boto3.client("sns").list_topics()["Topics"]
    )


def test_dry_run_shows_dashboard_alarms_and_rollback(aws, capsys):
    assert main(deploy_args("r", "realtime", "--dry-run")) == 0
    out = capsys.readouterr().out
    assert "would ensure  CloudWatch dashboard gen3d-r" in out
    assert "would ensure  CloudWatch alarm r-gen3d-5xx-rate" in out
    assert "would ensure  CloudWatch alarm r-gen3d-gpu-memory" in out
    assert '"AutoRollbackConfiguration"' in out and "r-gen3d-5xx-rate" in out
    assert boto3.client("cloudwatch").list_dashboards()["DashboardEntries"] == []


@pytest.mark.parametrize("mode", ["async", "realtime", "serverless"])
def test_every_request_passes_botocores_validator(mode):
    image = CPU_IMAGE if mode == "serverless" else GPU_IMAGE
    kind = {"instance_type": "ml.g5.xlarge"} if mode != "serverless" else {}
    spec = DeploySpec("v", mode, image, MODEL_DATA, ROLE, **kind)
    topic = "arn:aws:sns:us-east-1:123456789012:gen3d-v-error"
    requests = alarms.alarm_requests(spec, topic)
    assert len(requests) == {"async": 4, "realtime": 2, "serverless": 1}[mode]
    for request in requests:
        validate_request("cloudwatch", "PutMetricAlarm", request)
    body = dashboard_body(spec, "us-east-1")
    validate_request(
        "cloudwatch",
        "PutDashboard",
        {"DashboardName": dashboard_name("v"), "DashboardBody": json.dumps(body)},
    )
    validate_request(
        "sagemaker",
        "UpdateEndpoint",
        {
            "EndpointName": "v",
            "EndpointConfigName": "c",
            "DeploymentConfig": alarms.deployment_config(spec),
        },
    )
