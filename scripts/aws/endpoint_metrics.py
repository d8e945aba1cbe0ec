"""Which SageMaker metrics an endpoint publishes, by deployment mode: the one table the
alarms, the dashboard and `gen3d status` take their metric names from.

A metric an endpoint does not publish never has data: an alarm on it stays OK forever
(TreatMissingData notBreaching), a widget stays empty. Sources, namespace AWS/SageMaker
unless noted:

| mode       | published (what we use)                                                  |
|------------|---------------------------------------------------------------------------|
| realtime   | Invocations, Invocation4XXErrors, Invocation5XXErrors, ModelLatency,     |
|            | OverheadLatency (EndpointName, VariantName)                              |
|            | docs.aws.amazon.com/sagemaker/latest/dg/monitoring-cloudwatch.html       |
| serverless | the same five (the list is exhaustive; OverheadLatency includes the cold |
|            | start) - docs.aws.amazon.com/sagemaker/latest/dg/                        |
|            | serverless-endpoints-monitoring.html                                     |
| async      | Invocation4XXErrors, Invocation5XXErrors, ModelLatency (EndpointName,    |
|            | VariantName); ApproximateBacklogSize, ApproximateBacklogSizePerInstance, |
|            | ApproximateAgeOfOldestRequest, HasBacklogWithoutCapacity (EndpointName); |
|            | InvocationsProcessed, InvocationFailures, ExpiredRequests,               |
|            | RequestDownloadFailures, ResponseUploadFailures, NotificationFailures,   |
|            | TimeInBacklog, TotalProcessingTime (EndpointName, VariantName).          |
|            | "Any metric not listed below is not published if the endpoint is enabled |
|            | for asynchronous inference ... OverheadLatency, Invocations,             |
|            | InvocationsPerInstance" - docs.aws.amazon.com/sagemaker/latest/dg/       |
|            | async-inference-monitor.html                                             |

Every mode on instances also publishes CPUUtilization, MemoryUtilization, GPUUtilization
and GPUMemoryUtilization to /aws/sagemaker/Endpoints (host-level metrics, same
monitoring-cloudwatch page; the async page points to them too); serverless publishes
none of those. (An early version of the async page spelled "InvocationsProcesssed"; the
metric's name is InvocationsProcessed.)
"""

from __future__ import annotations

SAGEMAKER = "AWS/SageMaker"
INSTANCE = "/aws/sagemaker/Endpoints"

_COMMON = frozenset({"Invocation4XXErrors", "Invocation5XXErrors", "ModelLatency"})
_SYNC = _COMMON | {"Invocations", "OverheadLatency"}
_HOST = frozenset({"CPUUtilization", "MemoryUtilization", "GPUUtilization", "GPUMemoryUtilization"})
_ASYNC = _COMMON | {
    "ApproximateBacklogSize",
    "ApproximateBacklogSizePerInstance",
    "ApproximateAgeOfOldestRequest",
    "HasBacklogWithoutCapacity",
    "InvocationsProcessed",
    "InvocationFailures",
    "ExpiredRequests",
    "RequestDownloadFailures",
    "ResponseUploadFailures",
    "NotificationFailures",
    "TimeInBacklog",
    "TotalProcessingTime",
}

# (namespace, metric) an endpoint of each mode publishes.
PUBLISHED: dict[str, frozenset[tuple[str, str]]] = {
    "realtime": frozenset({(SAGEMAKER, m) for m in _SYNC} | {(INSTANCE, m) for m in _HOST}),
    "serverless": frozenset({(SAGEMAKER, m) for m in _SYNC}),
    "async": frozenset({(SAGEMAKER, m) for m in _ASYNC} | {(INSTANCE, m) for m in _HOST}),
}


def publishes(mode: str, namespace: str, metric: str) -> bool:
    """Whether an endpoint of `mode` publishes `metric` (metrics of namespaces SageMaker
    does not own, such as the container's Gen3D, are the container's business: True)."""
    if namespace not in (SAGEMAKER, INSTANCE):
        return True
    return (namespace, metric) in PUBLISHED[mode]


def invocation_count_metric(mode: str) -> str:
    """The metric that counts requests handled: async endpoints publish no Invocations."""
    return "InvocationsProcessed" if mode == "async" else "Invocations"
