"""`gen3d status`: one deployment's state and numbers, read from SageMaker and CloudWatch.

Reads only (DescribeEndpoint, DescribeEndpointConfig, DescribeModel; for scale-to-zero
deployments ListInferenceComponents and DescribeInferenceComponent, whose specification
names the model; GetMetricData). Metric names per mode come from
gen3d.aws.endpoint_metrics: an async endpoint publishes InvocationsProcessed and
InvocationFailures, not Invocations or OverheadLatency. Figures CloudWatch
has no data for are None, shown as "no data". Instance counts over time and instance-hours
are estimates: SageMaker publishes no instance-count metric, but every instance sends one
CPUUtilization sample a minute to /aws/sagemaker/Endpoints, so samples per hour / 60 is
the average number of instances in that hour (docs.aws.amazon.com/sagemaker/latest/dg/
monitoring-cloudwatch.html). Latencies: ModelLatency and OverheadLatency are in
microseconds (same page); they are returned here in milliseconds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from gen3d.aws.clients import AwsClients
from gen3d.aws.endpoint_metrics import INSTANCE, SAGEMAKER, publishes
from gen3d.aws.endpoint_spec import VARIANT
from gen3d.aws.errors import AwsCommandError
from gen3d.serve.observe.metrics import NAMESPACE as GEN3D_NAMESPACE

HOUR_S = 3600


@dataclass
class Status:
    name: str
    state: str
    mode: str  # realtime | async | serverless | realtime-ic (inference components)
    config: str
    instance_type: str | None
    current_instances: int | None
    desired_instances: int | None
    serverless_memory_mb: int | None
    created: dt.datetime | None
    modified: dt.datetime | None
    failure: str | None
    backend: str | None  # GEN3D_BACKEND of the model (the container metrics' dimension)
    component: str | None = None  # realtime-ic: the inference component serving the model
    last_hour: dict[str, float | None] = field(default_factory=dict)
    instances_by_hour: list[float | None] = field(default_factory=list)  # last 24 h, estimate
    backlog: dict[str, float | None] = field(default_factory=dict)  # async only
    instance_hours_mtd: float | None = None  # estimate
    serverless_gb_seconds_mtd: float | None = None  # estimate: ModelLatency x memory
    month_start: dt.datetime | None = None


def read_status(clients: AwsClients, name: str, now: dt.datetime | None = None) -> Status:
    sm = clients.sagemaker
    try:
        endpoint = sm.describe_endpoint(EndpointName=name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ValidationException":
            raise AwsCommandError(
                f"no endpoint {name!r} in {clients.region} (deploy it with `gen3d deploy`)"
            ) from None
        raise
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    (variant,) = [v for v in config["ProductionVariants"] if v["VariantName"] == VARIANT] or [
        config["ProductionVariants"][0]
    ]
    live = next(
        (v for v in endpoint.get("ProductionVariants", []) if v["VariantName"] == VARIANT), {}
    )
    mode = (
        "async"
        if "AsyncInferenceConfig" in config
        else "serverless"
        if "ServerlessConfig" in variant
        else "realtime"
        if variant.get("ModelName")
        else "realtime-ic"
    )
    model_name, component = variant.get("ModelName"), None
    if mode == "realtime-ic":
        # The variant carries no model: the inference component's specification does.
        component, model_name = _component_model(sm, name)
    backend = None
    if model_name:
        model = sm.describe_model(ModelName=model_name)
        backend = model.get("PrimaryContainer", {}).get("Environment", {}).get("GEN3D_BACKEND")
    status = Status(
        name=name,
        state=endpoint["EndpointStatus"],
        mode=mode,
        config=endpoint["EndpointConfigName"],
        instance_type=variant.get("InstanceType"),
        current_instances=live.get("CurrentInstanceCount"),
        desired_instances=live.get("DesiredInstanceCount"),
        serverless_memory_mb=variant.get("ServerlessConfig", {}).get("MemorySizeInMB"),
        created=endpoint.get("CreationTime"),
        modified=endpoint.get("LastModifiedTime"),
        failure=endpoint.get("FailureReason"),
        backend=backend,
        component=component,
    )
    now = now or dt.datetime.now(dt.UTC)
    _read_metrics(clients.cloudwatch, status, now)
    return status


def _component_model(sagemaker: Any, endpoint: str) -> tuple[str | None, str | None]:
    """(inference component, its model) on `endpoint`; (None, None) when it has none yet."""
    found = [
        c["InferenceComponentName"]
        for page in sagemaker.get_paginator("list_inference_components").paginate(
            EndpointNameEquals=endpoint
        )
        for c in page.get("InferenceComponents", [])
    ]
    if not found:
        return None, None
    described = sagemaker.describe_inference_component(InferenceComponentName=found[0])
    return found[0], described.get("Specification", {}).get("ModelName")


def _query(qid: str, ns: str, metric: str, dims: dict[str, str], stat: str, period: int) -> dict:
    return {
        "Id": qid,
        "MetricStat": {
            "Metric": {
                "Namespace": ns,
                "MetricName": metric,
                "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
            },
            "Period": period,
            "Stat": stat,
        },
        "ReturnData": True,
    }


def _values(cloudwatch: Any, queries: list[dict], start: dt.datetime, end: dt.datetime) -> dict:
    """Query id -> [(timestamp, value)] oldest first, every page read."""
    found: dict[str, list[tuple[dt.datetime, float]]] = {q["Id"]: [] for q in queries}
    token: str | None = None
    while True:
        page = cloudwatch.get_metric_data(
            MetricDataQueries=queries,
            StartTime=start,
            EndTime=end,
            ScanBy="TimestampAscending",
            **({"NextToken": token} if token else {}),
        )
        for result in page["MetricDataResults"]:
            found[result["Id"]] += list(zip(result["Timestamps"], result["Values"], strict=True))
        token = page.get("NextToken")
        if not token:
            return {k: sorted(v) for k, v in found.items()}


def _total(points: list[tuple[dt.datetime, float]]) -> float | None:
    return sum(v for _, v in points) if points else None


def _last(points: list[tuple[dt.datetime, float]]) -> float | None:
    return points[-1][1] if points else None


def _invocation_dims(status: Status) -> dict[str, str]:
    """The dimensions SageMaker publishes request metrics under: per inference component
    on a scale-to-zero endpoint (monitoring-cloudwatch.html, inference component
    metrics), per endpoint and variant otherwise."""
    if status.mode == "realtime-ic" and status.component:
        return {"InferenceComponentName": status.component}
    return {"EndpointName": status.name, "VariantName": VARIANT}


def _read_metrics(cloudwatch: Any, status: Status, now: dt.datetime) -> None:
    endpoint = {"EndpointName": status.name, "VariantName": VARIANT}
    requests = _invocation_dims(status)
    mode = "async" if status.mode == "async" else status.mode.removesuffix("-ic")
    hour: list[dict] = []

    def sagemaker(qid: str, metric: str, stat: str, dims: dict[str, str] = requests) -> None:
        if publishes(mode, SAGEMAKER, metric):  # never ask for what the mode never has
            hour.append(_query(qid, SAGEMAKER, metric, dims, stat, HOUR_S))

    sagemaker("invocations", "Invocations", "Sum")
    sagemaker("processed", "InvocationsProcessed", "Sum")
    sagemaker("failures", "InvocationFailures", "Sum")
    sagemaker("errors4xx", "Invocation4XXErrors", "Sum")
    sagemaker("errors5xx", "Invocation5XXErrors", "Sum")
    for stat in ("p50", "p90", "p99"):
        sagemaker(f"model_{stat}", "ModelLatency", stat)
    for stat in ("p50", "p99"):
        sagemaker(f"overhead_{stat}", "OverheadLatency", stat)
        sagemaker(f"backlog_{stat}", "TimeInBacklog", stat)
    if status.backend:  # the container's dimensions; unknown backend: nothing to ask for
        ours = {"Deployment": status.name, "Backend": status.backend}
        for stat in ("p50", "p99"):
            hour.append(_query(f"queue_{stat}", GEN3D_NAMESPACE, "QueueTime", ours, stat, HOUR_S))
            hour.append(
                _query(f"inference_{stat}", GEN3D_NAMESPACE, "InferenceTime", ours, stat, HOUR_S)
            )
    if status.mode == "async":
        by_endpoint = {"EndpointName": status.name}
        hour += [
            _query("backlog", SAGEMAKER, "ApproximateBacklogSize", by_endpoint, "Maximum", 60),
            _query(
                "oldest_s", SAGEMAKER, "ApproximateAgeOfOldestRequest", by_endpoint, "Maximum", 60
            ),
        ]
    values = _values(cloudwatch, hour, now - dt.timedelta(hours=1), now)
    for key in ("invocations", "processed", "failures", "errors4xx", "errors5xx"):
        if key in values:
            status.last_hour[key] = _total(values[key])
    for key in values:
        if key.startswith(("model_", "overhead_", "backlog_")):  # microseconds -> ms
            last = _last(values[key])
            status.last_hour[key] = None if last is None else last / 1000
        elif key.startswith(("queue_", "inference_")):
            status.last_hour[key] = _last(values[key])
    if status.mode == "async":
        status.backlog = {"size": _last(values["backlog"]), "oldest_s": _last(values["oldest_s"])}

    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    status.month_start = month_start
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    day_start = this_hour - dt.timedelta(hours=23)  # 24 buckets, the current one partial
    if status.mode == "serverless":
        # billed duration ~ model latency summed (ms granularity); memory from the config
        usage = _values(
            cloudwatch,
            [_query("latency_sum", SAGEMAKER, "ModelLatency", requests, "Sum", HOUR_S)],
            month_start,
            now,
        )
        micros = _total(usage["latency_sum"])
        if micros is not None and status.serverless_memory_mb:
            status.serverless_gb_seconds_mtd = micros / 1e6 * status.serverless_memory_mb / 1024
        return
    samples = [_query("cpu_samples", INSTANCE, "CPUUtilization", endpoint, "SampleCount", HOUR_S)]
    month = _values(cloudwatch, samples, min(month_start, day_start), now)["cpu_samples"]
    by_hour = {t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t: v for t, v in month}
    status.instances_by_hour = []
    for i in range(24):
        hour = day_start + dt.timedelta(hours=i)
        minutes = min(60.0, (now - hour).total_seconds() / 60)  # the current hour: so far
        samples = by_hour.get(hour)
        status.instances_by_hour.append(
            None if samples is None or minutes <= 0 else samples / max(1.0, minutes)
        )
    in_month = [v for t, v in by_hour.items() if t >= month_start]
    status.instance_hours_mtd = sum(in_month) / 60 if in_month else None
