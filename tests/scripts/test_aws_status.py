"""`gen3d status` reading a deployment back from a real moto server."""

from __future__ import annotations

import datetime as dt

import boto3
import pytest
from botocore.stub import Stubber

from gen3d.aws.clients import AwsClients
from gen3d.aws.status import read_status
from gen3d.cli.commands.status import render
from gen3d.cli.main import main
from gen3d.cost.prices import load_prices

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
BUCKET = "gen3d-status-models"
DEPLOY = [
    *("deploy", "--name", "st", "--mode", "async", "--image", f"{ECR}/gen3d-gpu:1"),
    *("--model-data", f"s3://{BUCKET}/m.tar.gz", "--role", "arn:aws:iam::123456789012:role/x"),
    *("--poll", "0.01", "--timeout", "30"),
]
VARIANT_DIMS = [
    {"Name": "EndpointName", "Value": "st"},
    {"Name": "VariantName", "Value": "AllTraffic"},
]


@pytest.fixture
def deployed(aws: str, capsys: pytest.CaptureFixture[str]) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="m.tar.gz", Body=b"0")
    assert main(DEPLOY) == 0
    capsys.readouterr()


def status_lines(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    assert main(["status", "--name", "st"]) == 0
    out = capsys.readouterr().out
    sections: dict[str, str] = {}
    current = ""
    for line in out.splitlines():
        if not line.startswith(" "):
            current = line.split()[0] if line.split()[0] != "last" else "last hour"
            if line.startswith("this month"):
                current = "this month"
        sections[current] = sections.get(current, "") + line + "\n"
    return sections


def test_every_section_with_no_data_where_cloudwatch_has_none(deployed, capsys) -> None:
    sections = status_lines(capsys)
    assert set(sections) == {"endpoint", "instances", "last hour", "async", "this month"}
    assert "st: InService (async, ml.g4dn.xlarge, backend silhouette)" in sections["endpoint"]
    assert "now 1 (desired 1)" in sections["instances"]
    assert "last 24 h, hourly average (~, '.' = none reporting): no data" in sections["instances"]
    # async endpoints publish InvocationsProcessed and InvocationFailures, not Invocations
    assert "processed no data, failed no data, 4xx no data, 5xx no data" in sections["last hour"]
    assert "OverheadLatency" not in sections["last hour"]
    assert "ModelLatency p50/p90/p99: no data" in sections["last hour"]
    assert "backlog no data request(s); oldest no data" in sections["async"]
    assert "instance-hours since" in sections["this month"] and "no data" in sections["this month"]


def test_numbers_read_back_from_cloudwatch(deployed, capsys) -> None:
    cw = boto3.client("cloudwatch")
    now = dt.datetime.now(dt.UTC)
    recent = now - dt.timedelta(minutes=5)
    cw.put_metric_data(
        Namespace="AWS/SageMaker",
        MetricData=[
            {
                "MetricName": "InvocationsProcessed",
                "Dimensions": VARIANT_DIMS,
                "Value": 6,
                "Timestamp": recent,
            },
            {
                "MetricName": "InvocationFailures",
                "Dimensions": VARIANT_DIMS,
                "Value": 2,
                "Timestamp": recent,
            },
            {
                "MetricName": "Invocation5XXErrors",
                "Dimensions": VARIANT_DIMS,
                "Value": 2,
                "Timestamp": recent,
            },
            {
                "MetricName": "ApproximateBacklogSize",
                "Dimensions": [{"Name": "EndpointName", "Value": "st"}],
                "Value": 3,
                "Timestamp": recent,
            },
        ],
    )
    # one CPUUtilization sample a minute per instance: 30 samples = half an instance-hour
    cw.put_metric_data(
        Namespace="/aws/sagemaker/Endpoints",
        MetricData=[
            {
                "MetricName": "CPUUtilization",
                "Dimensions": VARIANT_DIMS,
                "Value": 40.0,
                "Timestamp": now - dt.timedelta(minutes=m),
            }
            for m in range(1, 31)
        ],
    )
    sections = status_lines(capsys)
    assert "processed 6, failed 2 (25.0 %), 4xx no data, 5xx 2" in sections["last hour"]
    hourly = sections["instances"].splitlines()[1].split(": ")[1].split()
    assert len(hourly) == 24
    if now.minute >= 5:  # the current hour so far: samples in it / minutes elapsed
        elapsed = now.minute + now.second / 60
        expected = sum(1 for m in range(1, 31) if m <= elapsed) / elapsed
        assert abs(float(hourly[-1]) - expected) <= 0.1, (hourly[-1], expected)
    assert "backlog 3 request(s)" in sections["async"]
    price = load_prices().value("sagemaker.async.ml.g4dn.xlarge")
    month = sections["this month"]
    if now.day == 1 and now.hour == 0 and now.minute < 31:
        pytest.skip("some samples fall before the month began")
    assert "~0.5 instance-hours" in month and "(estimate;" in month
    assert f"~${0.5 * price:,.2f} compute" in month


def test_an_unknown_endpoint_is_one_line(aws, capsys) -> None:
    assert main(["status", "--name", "nothing-here"]) == 1
    err = capsys.readouterr().err
    assert (
        err.strip()
        == "error: no endpoint 'nothing-here' in us-east-1 (deploy it with `gen3d deploy`)"
    )


# ----------------------------------------------- every mode (issue 27)

CPU_IMAGE = f"{ECR}/gen3d-cpu:1"


@pytest.mark.parametrize(
    ("mode", "extra", "where"),
    [
        ("realtime", ["--instance-type", "ml.m5.large"], "realtime, ml.m5.large"),
        ("serverless", [], "serverless, serverless 4096 MB"),
    ],
)
def test_status_of_realtime_and_serverless(aws, capsys, mode, extra, where) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="m.tar.gz", Body=b"0")
    args = [*DEPLOY, *extra]
    args[args.index("--mode") + 1] = mode
    # (an image outside ECR: serverless reads the size of an ECR image, moto has none)
    args[args.index("--image") + 1] = "registry.example.com/gen3d-cpu:1"
    assert main(args) == 0
    capsys.readouterr()
    boto3.client("cloudwatch").put_metric_data(
        Namespace="AWS/SageMaker",
        MetricData=[
            {
                "MetricName": name,
                "Dimensions": VARIANT_DIMS,
                "Value": value,
                "Timestamp": dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5),
            }
            for name, value in (("Invocations", 8), ("Invocation5XXErrors", 2))
        ],
    )
    sections = status_lines(capsys)
    assert f"st: InService ({where}, backend silhouette)" in sections["endpoint"]
    assert "invocations 8, 4xx no data, 5xx 2 (25.0 %)" in sections["last hour"]
    assert "OverheadLatency p50/p99: no data" in sections["last hour"]


def test_status_of_a_scale_to_zero_deployment(aws) -> None:
    """moto has no inference components: SageMaker's answers come from botocore's Stubber
    (strict validation on), CloudWatch is the moto server. The variant has no ModelName;
    the component's specification names the model, whose GEN3D_BACKEND is the container
    metrics' dimension (before: sent as "", which CloudWatch refuses, min length 1)."""
    clients = AwsClients()
    stub = Stubber(clients.sagemaker)
    created = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    stub.add_response(
        "describe_endpoint",
        {
            "EndpointName": "st",
            "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/st",
            "EndpointConfigName": "st-ic-0a1b2c3d",
            "EndpointStatus": "InService",
            "CreationTime": created,
            "LastModifiedTime": created,
            "ProductionVariants": [
                {"VariantName": "AllTraffic", "CurrentInstanceCount": 0, "DesiredInstanceCount": 0}
            ],
        },
        {"EndpointName": "st"},
    )
    stub.add_response(
        "describe_endpoint_config",
        {
            "EndpointConfigName": "st-ic-0a1b2c3d",
            "EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/x",
            "CreationTime": created,
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "InstanceType": "ml.g6e.xlarge",
                    "InitialInstanceCount": 1,
                    "ManagedInstanceScaling": {
                        "Status": "ENABLED",
                        "MinInstanceCount": 0,
                        "MaxInstanceCount": 2,
                    },
                }
            ],
        },
        {"EndpointConfigName": "st-ic-0a1b2c3d"},
    )
    stub.add_response(
        "list_inference_components",
        {
            "InferenceComponents": [
                {
                    "InferenceComponentName": "st-component",
                    "InferenceComponentArn": "arn:aws:sagemaker:us-east-1:123456789012:"
                    "inference-component/st-component",
                    "EndpointName": "st",
                    "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/st",
                    "VariantName": "AllTraffic",
                    "CreationTime": created,
                    "LastModifiedTime": created,
                }
            ]
        },
        {"EndpointNameEquals": "st"},
    )
    stub.add_response(
        "describe_inference_component",
        {
            "InferenceComponentName": "st-component",
            "InferenceComponentArn": "arn:aws:sagemaker:us-east-1:123456789012:"
            "inference-component/st-component",
            "EndpointName": "st",
            "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/st",
            "CreationTime": created,
            "LastModifiedTime": created,
            "Specification": {"ModelName": "st-0a1b2c3d"},
        },
        {"InferenceComponentName": "st-component"},
    )
    stub.add_response(
        "describe_model",
        {
            "ModelName": "st-0a1b2c3d",
            "ModelArn": "arn:aws:sagemaker:us-east-1:123456789012:model/st-0a1b2c3d",
            "CreationTime": created,
            "PrimaryContainer": {"Image": CPU_IMAGE, "Environment": {"GEN3D_BACKEND": "sam3d"}},
        },
        {"ModelName": "st-0a1b2c3d"},
    )
    sent: list[dict] = []
    clients.cloudwatch.meta.events.register(
        "provide-client-params.cloudwatch.GetMetricData", lambda params, **_: sent.append(params)
    )
    boto3.client("cloudwatch").put_metric_data(
        Namespace="AWS/SageMaker",
        MetricData=[
            {
                "MetricName": "Invocations",
                "Dimensions": [{"Name": "InferenceComponentName", "Value": "st-component"}],
                "Value": 5,
                "Timestamp": dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5),
            }
        ],
    )
    with stub:
        status = read_status(clients, "st")
    stub.assert_no_pending_responses()
    assert (status.mode, status.backend, status.component) == (
        "realtime-ic",
        "sam3d",
        "st-component",
    )
    assert status.last_hour["invocations"] == 5
    dims = [
        d["Value"]
        for request in sent
        for q in request["MetricDataQueries"]
        for d in q["MetricStat"]["Metric"]["Dimensions"]
    ]
    assert "" not in dims and "sam3d" in dims
    text = "\n".join(render(status, load_prices()))
    assert "(realtime-ic, ml.g6e.xlarge, backend sam3d)" in text
