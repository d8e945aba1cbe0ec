"""Scale-to-zero for an async endpoint, from an `AsyncScaling` (scaling_params.py).

Three policies on the variant's DesiredInstanceCount (0..max):
- target tracking on ApproximateBacklogSizePerInstance adds instances under load; its own
  scale-in is disabled, so it never removes one;
- from zero, AWS says target tracking starts scaling out only once the backlog exceeds
  the target value (5 here; docs: async-inference-autoscale.html, "Optional: Define a
  scaling policy that scales up from zero for new requests"), so a step policy (+1) fired
  by an alarm on HasBacklogWithoutCapacity (one 60 s period) starts the first instance
  for the first request;
- a step policy that sets the capacity to exactly 0, fired by an alarm on the endpoint's
  ApproximateBacklogSize (items queued *or being processed*, per
  async-inference-monitor.html) having a Maximum below 1 for `idle_minutes` consecutive
  minutes. This is the only scale-in: it cannot remove an instance that is processing a
  request, and a request that arrives after it goes back through the alarm above.
  docs/deploy.md ("Scaling in, and the races") walks through the cases.

Application Auto Scaling resolves policies that disagree in favour of the largest
capacity, and a step scale-in is not blocked by a target tracking policy that is not
ready to scale in (PutScalingPolicy in its API reference); with target tracking's
scale-in off the two never disagree about removing capacity. The cost model reads the
same numbers.
"""

from __future__ import annotations

from typing import Any

from gen3d.aws.clients import tag_list, tag_map
from gen3d.aws.plan import CREATED, UNCHANGED, UPDATED, ApiCall, Plan
from gen3d.aws.scaling_params import ASYNC_SCALING, AsyncScaling

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"


def resource_id(endpoint: str, variant: str) -> str:
    return f"endpoint/{endpoint}/variant/{variant}"


def policy_names(endpoint: str) -> tuple[str, str]:
    return f"{endpoint}-backlog-target", f"{endpoint}-scale-out-from-zero"


def scale_in_policy_name(endpoint: str) -> str:
    return f"{endpoint}-scale-in-to-zero"


def alarm_name(endpoint: str) -> str:
    return f"{endpoint}-has-backlog-without-capacity"


def idle_alarm_name(endpoint: str) -> str:
    return f"{endpoint}-backlog-empty"


def scalable_target_request(
    endpoint: str,
    variant: str,
    max_instances: int,
    deployment: str,
    scaling: AsyncScaling = ASYNC_SCALING,
) -> dict[str, Any]:
    return {
        "ServiceNamespace": NAMESPACE,
        "ResourceId": resource_id(endpoint, variant),
        "ScalableDimension": DIMENSION,
        "MinCapacity": scaling.min_instances,
        "MaxCapacity": max_instances,
        "Tags": tag_map(deployment),
    }


def target_tracking_request(
    endpoint: str, variant: str, scaling: AsyncScaling = ASYNC_SCALING
) -> dict[str, Any]:
    return {
        "PolicyName": policy_names(endpoint)[0],
        "ServiceNamespace": NAMESPACE,
        "ResourceId": resource_id(endpoint, variant),
        "ScalableDimension": DIMENSION,
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": scaling.backlog_target_per_instance,
            "CustomizedMetricSpecification": {
                "MetricName": "ApproximateBacklogSizePerInstance",
                "Namespace": "AWS/SageMaker",
                "Dimensions": [{"Name": "EndpointName", "Value": endpoint}],
                "Statistic": "Average",
            },
            "ScaleInCooldown": scaling.scale_in_cooldown_s,
            "ScaleOutCooldown": scaling.scale_out_cooldown_s,
            "DisableScaleIn": scaling.target_tracking_disable_scale_in,
        },
    }


def step_policy_request(
    endpoint: str, variant: str, scaling: AsyncScaling = ASYNC_SCALING
) -> dict[str, Any]:
    return {
        "PolicyName": policy_names(endpoint)[1],
        "ServiceNamespace": NAMESPACE,
        "ResourceId": resource_id(endpoint, variant),
        "ScalableDimension": DIMENSION,
        "PolicyType": "StepScaling",
        "StepScalingPolicyConfiguration": {
            "AdjustmentType": "ChangeInCapacity",
            "MetricAggregationType": "Maximum",
            "Cooldown": scaling.step_cooldown_s,
            "StepAdjustments": [
                {
                    "MetricIntervalLowerBound": 0.0,
                    "ScalingAdjustment": scaling.step_adjustment_instances,
                }
            ],
        },
    }


def backlog_alarm_request(
    endpoint: str, step_policy_arn: str, deployment: str, scaling: AsyncScaling = ASYNC_SCALING
) -> dict[str, Any]:
    return {
        "AlarmName": alarm_name(endpoint),
        "AlarmDescription": "scale the async endpoint out from zero when requests wait",
        "Namespace": "AWS/SageMaker",
        "MetricName": "HasBacklogWithoutCapacity",
        "Dimensions": [{"Name": "EndpointName", "Value": endpoint}],
        "Statistic": "Maximum",
        "Period": scaling.backlog_alarm_period_s,
        "EvaluationPeriods": scaling.backlog_alarm_evaluation_periods,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "notBreaching",
        "AlarmActions": [step_policy_arn],
        "Tags": tag_list(deployment),
    }


def scale_in_policy_request(
    endpoint: str, variant: str, scaling: AsyncScaling = ASYNC_SCALING
) -> dict[str, Any]:
    """Set the capacity to exactly 0 when the empty-backlog alarm fires. The alarm breaches
    below its threshold, so the one step covers every value at or under it (an upper
    bound of 0 and no lower bound)."""
    return {
        "PolicyName": scale_in_policy_name(endpoint),
        "ServiceNamespace": NAMESPACE,
        "ResourceId": resource_id(endpoint, variant),
        "ScalableDimension": DIMENSION,
        "PolicyType": "StepScaling",
        "StepScalingPolicyConfiguration": {
            "AdjustmentType": "ExactCapacity",
            "MetricAggregationType": "Maximum",
            "Cooldown": scaling.scale_in_step_cooldown_s,
            "StepAdjustments": [{"MetricIntervalUpperBound": 0.0, "ScalingAdjustment": 0}],
        },
    }


def idle_alarm_request(
    endpoint: str, scale_in_policy_arn: str, deployment: str, scaling: AsyncScaling = ASYNC_SCALING
) -> dict[str, Any]:
    """Nothing queued and nothing in process for `idle_minutes` whole minutes. Missing
    data does not count as empty: without a datapoint the alarm cannot tell that no
    request is being processed, and keeping an instance is the side that loses no work."""
    return {
        "AlarmName": idle_alarm_name(endpoint),
        "AlarmDescription": f"scale the async endpoint in to zero after {scaling.idle_minutes} "
        "minute(s) with nothing queued or in process",
        "Namespace": "AWS/SageMaker",
        "MetricName": "ApproximateBacklogSize",
        "Dimensions": [{"Name": "EndpointName", "Value": endpoint}],
        "Statistic": "Maximum",
        "Period": scaling.idle_alarm_period_s,
        "EvaluationPeriods": scaling.idle_minutes,
        "DatapointsToAlarm": scaling.idle_minutes,
        "Threshold": 1.0,
        "ComparisonOperator": "LessThanThreshold",
        "TreatMissingData": "notBreaching",
        "AlarmActions": [scale_in_policy_arn],
        "Tags": tag_list(deployment),
    }


def _policy_config(policy: dict[str, Any]) -> Any:
    key = (
        "TargetTrackingScalingPolicyConfiguration"
        if policy["PolicyType"] == "TargetTrackingScaling"
        else "StepScalingPolicyConfiguration"
    )
    return _normalise(policy.get(key))


def _normalise(value: Any) -> Any:
    """Numbers compare as floats, so 0 and 0.0 from a round trip are equal."""
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


ALARM_KEYS = (
    "MetricName",
    "Namespace",
    "Statistic",
    "Period",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "Threshold",
    "ComparisonOperator",
    "AlarmActions",
    "Dimensions",
    "TreatMissingData",
)


def _put_alarm(cloudwatch: Any, alarm: dict[str, Any]) -> tuple[str, None]:
    found = cloudwatch.describe_alarms(AlarmNames=[alarm["AlarmName"]])["MetricAlarms"]
    keys = [k for k in ALARM_KEYS if k in alarm]
    if found and all(_normalise(found[0].get(k)) == _normalise(alarm[k]) for k in keys):
        return UNCHANGED, None
    cloudwatch.put_metric_alarm(**alarm)
    return (UPDATED if found else CREATED), None


def ensure_async_autoscaling(
    plan: Plan,
    aas: Any,
    cloudwatch: Any,
    *,
    endpoint: str,
    variant: str,
    max_instances: int,
    deployment: str,
    scaling: AsyncScaling = ASYNC_SCALING,
) -> None:
    target = scalable_target_request(endpoint, variant, max_instances, deployment, scaling)

    def register() -> tuple[str, None]:
        found = aas.describe_scalable_targets(
            ServiceNamespace=NAMESPACE,
            ResourceIds=[target["ResourceId"]],
            ScalableDimension=DIMENSION,
        )["ScalableTargets"]
        if found and (found[0]["MinCapacity"], found[0]["MaxCapacity"]) == (
            target["MinCapacity"],
            target["MaxCapacity"],
        ):
            return UNCHANGED, None
        aas.register_scalable_target(**target)
        return (UPDATED if found else CREATED), None

    plan.step(
        f"scalable target {target['ResourceId']} (min {target['MinCapacity']}, "
        f"max {max_instances})",
        register,
        calls=[ApiCall("application-autoscaling", "RegisterScalableTarget", target)],
    )

    def put_policy(request: dict[str, Any]) -> tuple[str, str]:
        # filter by name here too: not every implementation honours PolicyNames
        found = [
            p
            for p in aas.describe_scaling_policies(
                ServiceNamespace=NAMESPACE,
                ResourceId=request["ResourceId"],
                ScalableDimension=DIMENSION,
                PolicyNames=[request["PolicyName"]],
            )["ScalingPolicies"]
            if p["PolicyName"] == request["PolicyName"]
        ]
        if (
            found
            and found[0]["PolicyType"] == request["PolicyType"]
            and _policy_config(found[0]) == _policy_config(request)
        ):
            return UNCHANGED, found[0]["PolicyARN"]
        arn = aas.put_scaling_policy(**request)["PolicyARN"]
        return (UPDATED if found else CREATED), arn

    tracking = target_tracking_request(endpoint, variant, scaling)
    plan.step(
        "target tracking on ApproximateBacklogSizePerInstance "
        f"(target {scaling.backlog_target_per_instance:g} per instance"
        + (", scale-in disabled)" if scaling.target_tracking_disable_scale_in else ")"),
        lambda: put_policy(tracking),
        calls=[ApiCall("application-autoscaling", "PutScalingPolicy", tracking)],
    )
    step = step_policy_request(endpoint, variant, scaling)
    step_arn = plan.step(
        f"step scaling {step['PolicyName']} (+{scaling.step_adjustment_instances} from zero)",
        lambda: put_policy(step),
        placeholder="<arn of the step scaling policy>",
        calls=[ApiCall("application-autoscaling", "PutScalingPolicy", step)],
    )
    alarm = backlog_alarm_request(endpoint, step_arn, deployment, scaling)
    plan.step(
        f"alarm {alarm['AlarmName']} on HasBacklogWithoutCapacity -> step policy",
        lambda: _put_alarm(cloudwatch, alarm),
        calls=[ApiCall("cloudwatch", "PutMetricAlarm", alarm)],
    )
    scale_in = scale_in_policy_request(endpoint, variant, scaling)
    scale_in_arn = plan.step(
        f"step scaling {scale_in['PolicyName']} (capacity exactly 0)",
        lambda: put_policy(scale_in),
        placeholder="<arn of the scale-in policy>",
        calls=[ApiCall("application-autoscaling", "PutScalingPolicy", scale_in)],
    )
    idle = idle_alarm_request(endpoint, scale_in_arn, deployment, scaling)
    plan.step(
        f"alarm {idle['AlarmName']} on ApproximateBacklogSize (Maximum < 1 for "
        f"{scaling.idle_minutes} x {scaling.idle_alarm_period_s} s) -> scale-in policy",
        lambda: _put_alarm(cloudwatch, idle),
        calls=[ApiCall("cloudwatch", "PutMetricAlarm", idle)],
    )
