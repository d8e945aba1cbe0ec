"""A CloudWatch dashboard per deployment: SageMaker's endpoint metrics next to the
container's own (namespace Gen3D, gen3d.serve.observe.metrics).

Dashboard body reference: docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/
CloudWatch-Dashboard-Body-Structure.html (metric widgets: `metrics` rows of
[namespace, name, dimension, value, ..., {options}]; 24 grid columns). SageMaker metric
names and namespaces: only those gen3d.aws.endpoint_metrics lists for the deployment's mode
(its table cites the pages): an async endpoint publishes no Invocations or
OverheadLatency, so its rows are InvocationsProcessed, InvocationFailures, TimeInBacklog
and TotalProcessingTime instead. ModelLatency, OverheadLatency and TimeInBacklog are in
microseconds, TotalProcessingTime in milliseconds; /aws/sagemaker/Endpoints carries the
per-instance CPU/GPU, one sample a minute each.

The dashboard carries the deployment tag at creation and, in its first widget, the text
`gen3d:deployment=NAME`: teardown deletes only a dashboard of that name whose body says
so (moto 5.2.5, the tests' emulator, keeps no dashboard tags, so the body decides).
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from gen3d.aws.clients import TAG_KEY, tag_list
from gen3d.aws.endpoint_metrics import INSTANCE, SAGEMAKER
from gen3d.aws.endpoint_spec import VARIANT, DeploySpec
from gen3d.aws.plan import CREATED, UNCHANGED, UPDATED, Plan
from gen3d.aws.platform import is_gpu_instance
from gen3d.serve.observe.metrics import NAMESPACE as GEN3D_NAMESPACE

WIDTH, HEIGHT = 12, 6  # two widgets a row


def dashboard_name(deployment: str) -> str:
    return f"gen3d-{deployment}"


def marker(deployment: str) -> str:
    return f"{TAG_KEY}={deployment}"


def _metric(
    title: str, rows: list[list[Any]], region: str, stat: str = "Sum", period: int = 60
) -> dict[str, Any]:
    return {
        "type": "metric",
        "width": WIDTH,
        "height": HEIGHT,
        "properties": {
            "title": title,
            "metrics": rows,
            "view": "timeSeries",
            "region": region,
            "stat": stat,
            "period": period,
        },
    }


def dashboard_body(spec: DeploySpec, region: str) -> dict[str, Any]:
    """The dashboard's widgets for this deployment (a pure function: --dry-run prints it)."""
    name = spec.name
    endpoint = ["EndpointName", name, "VariantName", VARIANT]
    ours = ["Deployment", name, "Backend", spec.backend]
    widgets: list[dict[str, Any]] = [
        {
            "type": "text",
            "width": 24,
            "height": 2,
            "properties": {
                "markdown": f"## Gen3D deployment `{name}` ({spec.mode}, backend "
                f"{spec.backend})\nMade by `gen3d deploy`; `gen3d teardown --name {name}` "
                f"removes it. {marker(name)}"
            },
        },
        *_traffic_widgets(spec, endpoint, region),
        _metric(
            "Container: queue and inference time (ms)",
            [
                line
                for metric in ("QueueTime", "InferenceTime")
                for line in _percentiles(GEN3D_NAMESPACE, metric, ours, f"{metric} ")
            ],
            region,
            stat="p50",
        ),
        _metric(
            "Container: batch size, out-of-memory splits",
            [
                [GEN3D_NAMESPACE, "BatchSize", *ours, {"stat": "Average"}],
                [GEN3D_NAMESPACE, "BatchSize", *ours, {"stat": "Maximum", "label": "max"}],
                [GEN3D_NAMESPACE, "OOMSplits", *ours, {"stat": "Sum"}],
            ],
            region,
            stat="Average",
        ),
    ]
    if spec.mode != "serverless":
        widgets.append(
            _metric(
                "Instances (CPUUtilization samples a minute: one per instance)",
                [[INSTANCE, "CPUUtilization", *endpoint, {"stat": "SampleCount"}]],
                region,
                stat="SampleCount",
            )
        )
    if spec.mode != "serverless" and is_gpu_instance(spec.instance_type):
        widgets.append(
            _metric(
                "GPU utilisation and memory (%)",
                [
                    [INSTANCE, "GPUUtilization", *endpoint],
                    [INSTANCE, "GPUMemoryUtilization", *endpoint],
                ],
                region,
                stat="Maximum",
            )
        )
    if spec.mode == "async":
        by_endpoint = ["EndpointName", name]
        widgets += [
            _metric(
                "Async backlog",
                [
                    [SAGEMAKER, "ApproximateBacklogSize", *by_endpoint],
                    [SAGEMAKER, "HasBacklogWithoutCapacity", *by_endpoint],
                ],
                region,
                stat="Maximum",
            ),
            _metric(
                "Age of the oldest queued request (s)",
                [[SAGEMAKER, "ApproximateAgeOfOldestRequest", *by_endpoint]],
                region,
                stat="Maximum",
            ),
        ]
    return {"widgets": widgets}


P50_P99 = ("p50", "p99")
P50_P90_P99 = ("p50", "p90", "p99")


def _percentiles(
    namespace: str,
    metric: str,
    dimensions: list[str],
    label: str = "",
    stats: tuple[str, ...] = P50_P99,
) -> list[list[Any]]:
    """One graph line per percentile of `metric`, labelled `label` + the percentile."""
    return [
        [namespace, metric, *dimensions, {"stat": stat, "label": f"{label}{stat}"}]
        for stat in stats
    ]


def _traffic_widgets(spec: DeploySpec, endpoint: list[str], region: str) -> list[dict[str, Any]]:
    """Requests, errors and latency, from the metrics the mode publishes."""
    model_latency = _percentiles(SAGEMAKER, "ModelLatency", endpoint, "model ", P50_P90_P99)
    errors = [
        [SAGEMAKER, "Invocation4XXErrors", *endpoint],
        [SAGEMAKER, "Invocation5XXErrors", *endpoint],
    ]
    if spec.mode == "async":
        return [
            _metric(
                "Requests processed and failed (async)",
                [
                    [SAGEMAKER, "InvocationsProcessed", *endpoint],
                    [SAGEMAKER, "InvocationFailures", *endpoint],
                    [SAGEMAKER, "ExpiredRequests", *endpoint],
                ],
                region,
            ),
            _metric("Errors (4xx, 5xx)", errors, region),
            _metric(
                "ModelLatency and TimeInBacklog (microseconds)",
                model_latency + _percentiles(SAGEMAKER, "TimeInBacklog", endpoint, "backlog "),
                region,
                stat="p50",
            ),
            _metric(
                "TotalProcessingTime, queued to done (milliseconds)",
                _percentiles(SAGEMAKER, "TotalProcessingTime", endpoint),
                region,
                stat="p50",
            ),
        ]
    return [
        _metric("Invocations", [[SAGEMAKER, "Invocations", *endpoint]], region),
        _metric("Errors (4xx, 5xx)", errors, region),
        _metric(
            "ModelLatency and OverheadLatency (microseconds)",
            model_latency + _percentiles(SAGEMAKER, "OverheadLatency", endpoint, "overhead "),
            region,
            stat="p50",
        ),
    ]


def widget_metrics(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(namespace, metric) of every row of every metric widget."""
    return [
        (row[0], row[1])
        for w in body["widgets"]
        if w["type"] == "metric"
        for row in w["properties"]["metrics"]
    ]


def ensure_dashboard(plan: Plan, cloudwatch: Any, spec: DeploySpec, region: str) -> None:
    name = dashboard_name(spec.name)
    body = dashboard_body(spec, region)
    request = {
        "DashboardName": name,
        "DashboardBody": json.dumps(body),
        "Tags": tag_list(spec.name),
    }

    def apply() -> tuple[str, None]:
        current = _body(cloudwatch, name)
        if current == body:
            return UNCHANGED, None
        cloudwatch.put_dashboard(**request)
        return (CREATED if current is None else UPDATED), None

    plan.step(f"CloudWatch dashboard {name}", apply, request={**request, "DashboardBody": body})


def _body(cloudwatch: Any, name: str) -> dict[str, Any] | None:
    try:
        return json.loads(cloudwatch.get_dashboard(DashboardName=name)["DashboardBody"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in (
            "ResourceNotFound",
            "ResourceNotFoundException",
        ):
            return None
        raise


def teardown_actions(cloudwatch: Any, deployment: str) -> list[tuple[str, Any]]:
    """(summary, delete) for this deployment's dashboard, if it exists and says it is ours."""
    name = dashboard_name(deployment)
    entries = cloudwatch.list_dashboards(DashboardNamePrefix=name).get("DashboardEntries", [])
    if not any(e["DashboardName"] == name for e in entries):
        return []
    if marker(deployment) not in json.dumps(_body(cloudwatch, name) or {}):
        return []
    return [
        (
            f"CloudWatch dashboard {name}",
            lambda: cloudwatch.delete_dashboards(DashboardNames=[name]),
        )
    ]
