"""A deployment's CloudWatch alarms, each notifying the deployment's SNS error topic, and
the blue/green DeploymentConfig that rolls a real-time endpoint back on the 5xx alarm.

| alarm                     | fires when                                                     |
|---------------------------|----------------------------------------------------------------|
| NAME-gen3d-5xx-rate       | realtime, serverless: 5xx answers > 5 % of Invocations in 3 of |
|                           | 5 minutes                                                      |
| NAME-gen3d-failure-rate   | async: InvocationFailures > 5 % of the requests handled        |
|                           | (InvocationsProcessed + InvocationFailures) in 3 of 5 minutes  |
| NAME-gen3d-gpu-memory     | GPU memory > 90 % of every GPU in 3 of 5 minutes (GPU types)   |
| NAME-gen3d-backlog-stuck  | async: requests queued with 0 instances for 15 minutes         |
| NAME-gen3d-oldest-request | async: the oldest queued request is older than its deadline    |

Names start with the deployment name and carry its tag, so `gen3d teardown` (which finds
alarms by that prefix and tag) removes them. Each alarm's description ends with a hash of
its request: a re-run compares hashes and sends nothing when they match.
Metric names: only those gen3d.aws.endpoint_metrics lists for the mode (async endpoints
publish no Invocations: an alarm dividing by it never fires). GPUMemoryUtilization runs
0-100 % times the instance's GPU count (monitoring-cloudwatch.html, instance metrics:
0-400 % on an instance with four GPUs), so the threshold is 90 x GPUs.
DeploymentConfig limits (botocore's sagemaker model): WaitIntervalInSeconds 0-3600,
TerminationWaitInSeconds 0-3600, MaximumExecutionTimeoutInSeconds 600-28800.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from gen3d.aws.clients import tag_list
from gen3d.aws.endpoint_metrics import INSTANCE, SAGEMAKER
from gen3d.aws.endpoint_spec import VARIANT, DeploySpec
from gen3d.aws.plan import CREATED, DELETED, UNCHANGED, UPDATED, Plan
from gen3d.aws.platform import is_gpu_instance
from gen3d.serve.instances import gpu_count

FIVE_XX_PERCENT = 5.0
GPU_MEMORY_PERCENT = 90.0  # of one GPU; the alarm's threshold is this x the GPU count
BACKLOG_STUCK_MINUTES = 15
ALARM_KINDS = ("5xx-rate", "failure-rate", "gpu-memory", "backlog-stuck", "oldest-request")
BAKE_S = 600  # blue/green: watch the 5xx alarm this long on the new fleet before switching


def alarm_name(deployment: str, what: str) -> str:
    return f"{deployment}-gen3d-{what}"


def _stat(metric: str, dimensions: list[dict[str, str]], stat: str, namespace: str) -> dict:
    return {
        "Metric": {"Namespace": namespace, "MetricName": metric, "Dimensions": dimensions},
        "Period": 60,
        "Stat": stat,
    }


def alarm_requests(spec: DeploySpec, topic_arn: str) -> list[dict[str, Any]]:
    """PutMetricAlarm bodies for this deployment (pure: --dry-run prints them)."""
    name = spec.name
    variant = [{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": VARIANT}]
    endpoint = [{"Name": "EndpointName", "Value": name}]
    common = {"AlarmActions": [topic_arn], "Tags": tag_list(name)}
    requests: list[dict[str, Any]] = [
        failure_rate_alarm(spec) if spec.mode == "async" else five_xx_alarm(spec)
    ]
    if spec.mode != "serverless" and is_gpu_instance(spec.instance_type):
        gpus = gpu_count(spec.instance_type)
        gpu_threshold = gpu_memory_threshold(spec.instance_type)
        requests.append(
            {
                "AlarmName": alarm_name(name, "gpu-memory"),
                "AlarmDescription": f"{name}: GPU memory above {GPU_MEMORY_PERCENT:g} % (of "
                f"{gpus} GPU(s): {gpu_threshold:g} summed) in 3 of the last 5 minutes "
                "(out-of-memory splits and 503 capacity follow)",
                "Namespace": INSTANCE,
                "MetricName": "GPUMemoryUtilization",
                "Dimensions": variant,
                "Statistic": "Maximum",
                "Period": 60,
                "Threshold": gpu_threshold,
                "ComparisonOperator": "GreaterThanThreshold",
                "EvaluationPeriods": 5,
                "DatapointsToAlarm": 3,
                "TreatMissingData": "notBreaching",
            }
        )
    if spec.mode == "async":
        deadline_s = spec.settings().request_timeout_s
        requests += [
            {
                "AlarmName": alarm_name(name, "backlog-stuck"),
                "AlarmDescription": f"{name}: requests have waited with no instance for "
                f"{BACKLOG_STUCK_MINUTES} minutes (scale-out from zero is not happening: "
                "quota, capacity or a failing instance)",
                "Namespace": SAGEMAKER,
                "MetricName": "HasBacklogWithoutCapacity",
                "Dimensions": endpoint,
                "Statistic": "Minimum",
                "Period": 60,
                "Threshold": 1.0,
                "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                "EvaluationPeriods": BACKLOG_STUCK_MINUTES,
                "TreatMissingData": "notBreaching",
            },
            {
                "AlarmName": alarm_name(name, "oldest-request"),
                "AlarmDescription": f"{name}: the oldest queued request is older than its "
                f"{deadline_s:g} s deadline (GEN3D_REQUEST_TIMEOUT_S)",
                "Namespace": SAGEMAKER,
                "MetricName": "ApproximateAgeOfOldestRequest",
                "Dimensions": endpoint,
                "Statistic": "Maximum",
                "Period": 60,
                "Threshold": float(deadline_s),
                "ComparisonOperator": "GreaterThanThreshold",
                "EvaluationPeriods": 1,
                "TreatMissingData": "notBreaching",
            },
        ]
    for request in requests:
        request.update(common)
        request["AlarmDescription"] += f" [{request_hash(request)}]"
    return requests


def gpu_memory_threshold(instance_type: str) -> float:
    """GPUMemoryUtilization is summed over the instance's GPUs (0-400 % on four)."""
    return GPU_MEMORY_PERCENT * max(1, gpu_count(instance_type))


# Both error-rate alarms: over FIVE_XX_PERCENT in 3 of the last 5 minutes; no data is OK.
PERCENT_OVER_3_OF_5_MINUTES: dict[str, Any] = {
    "Threshold": FIVE_XX_PERCENT,
    "ComparisonOperator": "GreaterThanThreshold",
    "EvaluationPeriods": 5,
    "DatapointsToAlarm": 3,
    "TreatMissingData": "notBreaching",
}


def five_xx_alarm(spec: DeploySpec) -> dict[str, Any]:
    """Realtime and serverless: 5xx answers as a share of Invocations (both published)."""
    name = spec.name
    variant = [{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": VARIANT}]
    return {
        "AlarmName": alarm_name(name, "5xx-rate"),
        "AlarmDescription": f"{name}: over {FIVE_XX_PERCENT:g} % of invocations answered "
        "5xx (server errors) in 3 of the last 5 minutes",
        "Metrics": [
            {
                "Id": "errors",
                "MetricStat": _stat("Invocation5XXErrors", variant, "Sum", SAGEMAKER),
                "ReturnData": False,
            },
            {
                "Id": "invocations",
                "MetricStat": _stat("Invocations", variant, "Sum", SAGEMAKER),
                "ReturnData": False,
            },
            {
                "Id": "rate",
                "Expression": "IF(invocations > 0, 100 * errors / invocations, 0)",
                "Label": "5xx % of invocations",
                "ReturnData": True,
            },
        ],
        **PERCENT_OVER_3_OF_5_MINUTES,
    }


def failure_rate_alarm(spec: DeploySpec) -> dict[str, Any]:
    """Async: failed requests (InvocationFailures: "if an invocation fails for any reason",
    a 5xx, a timeout, an unreadable input) as a share of those handled. Async endpoints
    publish no Invocations (gen3d.aws.endpoint_metrics); a minute in which one of the two
    counts has no datapoint counts it as 0 (FILL), so failures alone still breach."""
    name = spec.name
    variant = [{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": VARIANT}]
    return {
        "AlarmName": alarm_name(name, "failure-rate"),
        "AlarmDescription": f"{name}: over {FIVE_XX_PERCENT:g} % of async requests failed "
        "(InvocationFailures) in 3 of the last 5 minutes",
        "Metrics": [
            {
                "Id": "failures",
                "MetricStat": _stat("InvocationFailures", variant, "Sum", SAGEMAKER),
                "ReturnData": False,
            },
            {
                "Id": "processed",
                "MetricStat": _stat("InvocationsProcessed", variant, "Sum", SAGEMAKER),
                "ReturnData": False,
            },
            {"Id": "f", "Expression": "FILL(failures, 0)", "ReturnData": False},
            {"Id": "p", "Expression": "FILL(processed, 0)", "ReturnData": False},
            {
                "Id": "rate",
                "Expression": "IF(f + p > 0, 100 * f / (f + p), 0)",
                "Label": "failed % of async requests",
                "ReturnData": True,
            },
        ],
        **PERCENT_OVER_3_OF_5_MINUTES,
    }


def alarm_metrics(request: dict[str, Any]) -> list[tuple[str, str]]:
    """(namespace, metric) of every metric an alarm request reads."""
    if "MetricName" in request:
        return [(request["Namespace"], request["MetricName"])]
    return [
        (m["MetricStat"]["Metric"]["Namespace"], m["MetricStat"]["Metric"]["MetricName"])
        for m in request["Metrics"]
        if "MetricStat" in m
    ]


def request_hash(request: dict[str, Any]) -> str:
    body = {k: v for k, v in request.items() if k != "AlarmDescription"}
    body["AlarmDescription"] = request["AlarmDescription"].rsplit(" [", 1)[0]
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]


def ensure_alarms(plan: Plan, cloudwatch: Any, spec: DeploySpec, topic_arn: str) -> list[str]:
    """Create or update each alarm; unchanged ones are not sent again. Returns the names."""
    for request in alarm_requests(spec, topic_arn):

        def apply(request: dict[str, Any] = request) -> tuple[str, None]:
            found = cloudwatch.describe_alarms(AlarmNames=[request["AlarmName"]])
            current = found["MetricAlarms"]
            if current and current[0].get("AlarmDescription") == request["AlarmDescription"]:
                return UNCHANGED, None
            cloudwatch.put_metric_alarm(**request)
            return (UPDATED if current else CREATED), None

        plan.step(f"CloudWatch alarm {request['AlarmName']}", apply, request=request)
    wanted = [r["AlarmName"] for r in alarm_requests(spec, topic_arn)]
    # An alarm of ours this spec no longer asks for (async's 5xx-rate before it became
    # failure-rate, gpu-memory after a move to a CPU instance) would sit there, never firing.
    obsolete = [
        alarm_name(spec.name, w) for w in ALARM_KINDS if alarm_name(spec.name, w) not in wanted
    ]

    def remove() -> tuple[str, None]:
        found = cloudwatch.describe_alarms(AlarmNames=obsolete)["MetricAlarms"]
        if not found:
            return UNCHANGED, None
        cloudwatch.delete_alarms(AlarmNames=[a["AlarmName"] for a in found])
        return DELETED, None

    plan.step(f"no other gen3d alarms of {spec.name} ({', '.join(obsolete)})", remove)
    return wanted


def deployment_config(spec: DeploySpec) -> dict[str, Any]:
    """Blue/green for real-time endpoints: the new fleet takes all traffic at once, the 5xx
    alarm is watched for BAKE_S, and if it fires SageMaker rolls back to the old fleet."""
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": BAKE_S},
            "TerminationWaitInSeconds": 300,
            "MaximumExecutionTimeoutInSeconds": 3600,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": alarm_name(spec.name, "5xx-rate")}]},
    }
