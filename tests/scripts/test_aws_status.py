"""`gen3d status` reading a deployment back from a real moto server."""

from __future__ import annotations

import datetime as dt

import boto3
import pytest

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
    assert "invocations no data, 4xx no data, 5xx no data" in sections["last hour"]
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
                "MetricName": "Invocations",
                "Dimensions": VARIANT_DIMS,
                "Value": 8,
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
    assert "invocations 8, 4xx no data, 5xx 2 (25.0 %)" in sections["last hour"]
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
