"""Scale-to-zero for an async endpoint, from `scaling_params.ASYNC_SCALING`.

Target tracking on ApproximateBacklogSizePerInstance scales between 0 and max. From zero,
AWS says it starts scaling out only once the backlog exceeds the target value (5 here;
docs: async-inference-autoscale.html, "Optional: Define a scaling policy that scales up
from zero for new requests"), so one to five queued requests would wait for more to
arrive. The step-scaling policy fired by a CloudWatch alarm on HasBacklogWithoutCapacity
(one 60 s period) starts the first instance for the first request. The cost model reads
the same numbers.
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


def alarm_name(endpoint: str) -> str:
    return f"{endpoint}-has-backlog-without-capacity"


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


def ensure_async_autoscaling(
    plan: Plan,
    aas: Any,
    cloudwatch: Any,
    *,
    endpoint: str,
    variant: str,
    max_instances: int,
    deployment: str,
) -> None:
    target = scalable_target_request(endpoint, variant, max_instances, deployment)

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

    tracking = target_tracking_request(endpoint, variant)
    plan.step(
        "target tracking on ApproximateBacklogSizePerInstance "
        f"(target {ASYNC_SCALING.backlog_target_per_instance:g} per instance)",
        lambda: put_policy(tracking),
        calls=[ApiCall("application-autoscaling", "PutScalingPolicy", tracking)],
    )
    step = step_policy_request(endpoint, variant)
    step_arn = plan.step(
        f"step scaling {step['PolicyName']} (+{ASYNC_SCALING.step_adjustment_instances} from zero)",
        lambda: put_policy(step),
        placeholder="<arn of the step scaling policy>",
        calls=[ApiCall("application-autoscaling", "PutScalingPolicy", step)],
    )
    alarm = backlog_alarm_request(endpoint, step_arn, deployment)

    def put_alarm() -> tuple[str, None]:
        found = cloudwatch.describe_alarms(AlarmNames=[alarm["AlarmName"]])["MetricAlarms"]
        keys = (
            "MetricName",
            "Namespace",
            "Statistic",
            "Period",
            "EvaluationPeriods",
            "Threshold",
            "ComparisonOperator",
            "AlarmActions",
            "Dimensions",
            "TreatMissingData",
        )
        if found and all(_normalise(found[0].get(k)) == _normalise(alarm[k]) for k in keys):
            return UNCHANGED, None
        cloudwatch.put_metric_alarm(**alarm)
        return (UPDATED if found else CREATED), None

    plan.step(
        f"alarm {alarm['AlarmName']} on HasBacklogWithoutCapacity -> step policy",
        put_alarm,
        calls=[ApiCall("cloudwatch", "PutMetricAlarm", alarm)],
    )
