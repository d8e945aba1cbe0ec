"""Dashboard, alarms and blue/green rollback from `gen3d deploy`, against a real moto server."""

from __future__ import annotations

import json

import boto3
import pytest
from aws_requests import MODEL_BUCKET
from aws_requests import validate_strictly as validate_request

from gen3d.aws import alarms, endpoint_metrics, iam, inference_components
from gen3d.aws.clients import TAG_KEY, AwsClients
from gen3d.aws.dashboard import dashboard_body, dashboard_name, widget_metrics
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
    # what async endpoints publish; never Invocations or OverheadLatency (they have none)
    assert {"InvocationsProcessed", "InvocationFailures", "Invocation5XXErrors"} <= names
    assert {"ModelLatency", "TimeInBacklog", "TotalProcessingTime"} <= names
    assert not {"Invocations", "OverheadLatency", "InvocationsPerInstance"} & names
    assert {"QueueTime", "InferenceTime", "BatchSize", "OOMSplits"} <= names
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
        "t-gen3d-failure-rate",
        "t-gen3d-gpu-memory",
        "t-gen3d-backlog-stuck",
        "t-gen3d-oldest-request",
    }
    for alarm in ours.values():
        assert alarm["AlarmActions"] == [error_topic]
        assert tags(alarm["AlarmArn"]) == {TAG_KEY: "t"}
    assert ours["t-gen3d-gpu-memory"]["Threshold"] == alarms.GPU_MEMORY_PERCENT
    assert ours["t-gen3d-oldest-request"]["Threshold"] == 900  # async deadline
    rate = {m["Id"]: m for m in ours["t-gen3d-failure-rate"]["Metrics"]}
    assert rate["failures"]["MetricStat"]["Metric"]["MetricName"] == "InvocationFailures"
    assert rate["processed"]["MetricStat"]["Metric"]["MetricName"] == "InvocationsProcessed"
    assert rate["rate"]["Expression"] == "IF(f + p > 0, 100 * f / (f + p), 0)"

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
    assert "unchanged  CloudWatch alarm t-gen3d-failure-rate" in out
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
    topic = alarms_by_name()["t-gen3d-failure-rate"]["AlarmActions"][0]
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
    assert alarms.alarm_name("v", "failure-rate" if mode == "async" else "5xx-rate") in {
        r["AlarmName"] for r in requests
    }
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


# ------------------------------------------------ metrics each mode publishes (issue 27)


@pytest.mark.parametrize("mode", ["async", "realtime", "serverless"])
@pytest.mark.parametrize("instance", ["ml.g5.xlarge", "ml.g5.12xlarge", "ml.m5.large"])
def test_alarms_and_dashboard_use_only_metrics_the_mode_publishes(mode, instance):
    """Held against gen3d.aws.endpoint_metrics, whose table cites the documentation."""
    image = CPU_IMAGE if mode == "serverless" or instance == "ml.m5.large" else GPU_IMAGE
    kind = {"instance_type": instance} if mode != "serverless" else {}
    spec = DeploySpec("v", mode, image, MODEL_DATA, ROLE, **kind)
    used = [
        metric
        for request in alarms.alarm_requests(spec, "arn:aws:sns:us-east-1:123456789012:e")
        for metric in alarms.alarm_metrics(request)
    ] + widget_metrics(dashboard_body(spec, "us-east-1"))
    unpublished = [m for m in used if not endpoint_metrics.publishes(mode, *m)]
    assert unpublished == [], f"{mode} publishes none of {unpublished}"
    sagemaker_metrics = {name for ns, name in used if ns == endpoint_metrics.SAGEMAKER}
    assert endpoint_metrics.invocation_count_metric(mode) in sagemaker_metrics


def test_the_table_follows_the_async_documentation():
    # async-inference-monitor.html: "not published ... OverheadLatency, Invocations,
    # InvocationsPerInstance"; the common and async tables list the rest
    for missing in ("Invocations", "OverheadLatency", "InvocationsPerInstance"):
        assert not endpoint_metrics.publishes("async", "AWS/SageMaker", missing)
    for listed in ("InvocationsProcessed", "InvocationFailures", "ApproximateBacklogSize"):
        assert endpoint_metrics.publishes("async", "AWS/SageMaker", listed)
    assert not endpoint_metrics.publishes(
        "serverless", "/aws/sagemaker/Endpoints", "CPUUtilization"
    )


@pytest.mark.parametrize(
    ("instance", "threshold"),
    [("ml.g5.xlarge", 90), ("ml.g5.12xlarge", 360), ("ml.g6e.48xlarge", 720)],
)
def test_gpu_memory_threshold_scales_with_the_gpu_count(instance, threshold):
    spec = DeploySpec("v", "realtime", GPU_IMAGE, MODEL_DATA, ROLE, instance_type=instance)
    (gpu,) = [
        r
        for r in alarms.alarm_requests(spec, "arn:aws:sns:us-east-1:123456789012:e")
        if r["AlarmName"] == "v-gen3d-gpu-memory"
    ]
    assert gpu["Threshold"] == threshold
    validate_request("cloudwatch", "PutMetricAlarm", gpu)


def test_the_execution_role_may_read_every_rollback_alarm():
    spec = DeploySpec("r", "realtime", GPU_IMAGE, MODEL_DATA, ROLE)
    policy = iam.execution_role_policy(
        deployment="r",
        bucket="b",
        account="123456789012",
        region="us-east-1",
        ecr_repositories=["gen3d-gpu"],
    )
    (statement,) = [s for s in policy["Statement"] if "cloudwatch:DescribeAlarms" in s["Action"]]
    readable = {arn.rsplit(":alarm:", 1)[1] for arn in statement["Resource"]}
    rollback = {
        a["AlarmName"]
        for a in alarms.deployment_config(spec)["AutoRollbackConfiguration"]["Alarms"]
    }
    rollback.add(inference_components.rollback_alarm_request(spec)["AlarmName"])
    assert rollback <= readable
    assert all(
        arn.startswith("arn:aws:cloudwatch:us-east-1:123456789012:alarm:")
        for arn in statement["Resource"]
    )


def test_an_alarm_the_spec_no_longer_asks_for_is_removed(model_artifact):
    """An async deployment made before the failure-rate alarm has a 5xx-rate alarm on
    Invocations, which async endpoints never publish: a re-deploy removes it."""
    cw = boto3.client("cloudwatch")
    spec = DeploySpec("t", "async", GPU_IMAGE, MODEL_DATA, ROLE)
    old = alarms.five_xx_alarm(spec)
    cw.put_metric_alarm(**old)
    assert main(deploy_args("t", "async")) == 0
    names = set(alarms_by_name())
    assert "t-gen3d-5xx-rate" not in names and "t-gen3d-failure-rate" in names
