"""Real-time scale-to-zero through inference components (`deploy --mode realtime
--scale-to-zero`).

The endpoint config carries no model: ManagedInstanceScaling lets the instance count reach
0, the model runs as an inference component whose copy count autoscales with minimum 0, and
(as with async endpoints) a step policy fired by an alarm on NoCapacityInvocationFailures
adds the first copy as soon as a request finds none. While at zero, requests fail until a
copy is up: this suits clients that retry.

A changed model (new image, environment or artifact) is rolled out with
UpdateInferenceComponent: a rolling update that bakes each step while an alarm on the
component's 5xx errors watches, and rolls back when it fires. Autoscaling is registered
once the component is InService. Its logs go to /aws/sagemaker/InferenceComponents/NAME,
a group deploy creates with a retention and teardown deletes.

The local emulator (moto) does not implement inference components: these bodies are
checked against botocore's service model in the tests and sent only to real AWS.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from gen3d.aws import endpoint_spec
from gen3d.aws.clients import AwsClients, tag_list, tag_map
from gen3d.aws.endpoint_spec import VARIANT, DeploySpec
from gen3d.aws.plan import CREATED, UNCHANGED, UPDATED, ApiCall, Plan
from gen3d.aws.platform import is_gpu_instance
from gen3d.aws.scaling_params import ASYNC_SCALING
from gen3d.aws.waiters import Progress, wait_for_inference_component

DIMENSION = "sagemaker:inference-component:DesiredCopyCount"
CONCURRENCY_TARGET_PER_COPY = 4.0
CONCURRENCY_METRIC = "SageMakerInferenceComponentConcurrentRequestsPerCopyHighResolution"


# Rolling update: half the copies per step, each baked this long under the rollback alarm.
ROLLING_BATCH_PERCENT = 50  # the API allows 5-50 % of the copy count per step
ROLLING_BAKE_S = 300


def component_name(deployment: str) -> str:
    return f"{deployment}-component"


def rollback_alarm_name(deployment: str) -> str:
    return f"{component_name(deployment)}-5xx"


def endpoint_config_request(spec: DeploySpec, *, model_bytes: int | None) -> dict[str, Any]:
    download_s, startup_s = endpoint_spec.startup_timeouts(model_bytes)
    variant: dict[str, Any] = {
        "VariantName": VARIANT,
        "InstanceType": spec.instance_type,
        "InitialInstanceCount": 1,
        "ManagedInstanceScaling": {
            "Status": "ENABLED",
            "MinInstanceCount": 0,
            "MaxInstanceCount": spec.max_instances,
        },
        "RoutingConfig": {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"},
        "ModelDataDownloadTimeoutInSeconds": download_s,
        "ContainerStartupHealthCheckTimeoutInSeconds": startup_s,
    }
    ami = endpoint_spec.ami_version(spec)
    if ami:
        variant["InferenceAmiVersion"] = ami
    body = {"ProductionVariants": [variant], "ExecutionRoleArn": spec.role_arn}
    name = f"{spec.name}-ic-{endpoint_spec._short_hash(body)}"
    return {"EndpointConfigName": name, **body, "Tags": tag_list(spec.name)}


def component_request(
    spec: DeploySpec, model_name: str, *, model_bytes: int | None = None
) -> dict[str, Any]:
    download_s, startup_s = endpoint_spec.startup_timeouts(model_bytes)
    resources: dict[str, Any] = {"MinMemoryRequiredInMb": 4096}
    if is_gpu_instance(spec.instance_type):
        resources["NumberOfAcceleratorDevicesRequired"] = 1
    return {
        "InferenceComponentName": component_name(spec.name),
        "EndpointName": spec.name,
        "VariantName": VARIANT,
        "Specification": {
            "ModelName": model_name,
            "ComputeResourceRequirements": resources,
            "StartupParameters": {
                "ModelDataDownloadTimeoutInSeconds": download_s,
                "ContainerStartupHealthCheckTimeoutInSeconds": startup_s,
            },
        },
        "RuntimeConfig": {"CopyCount": 1},
        "Tags": tag_list(spec.name),
    }


def rollback_alarm_request(spec: DeploySpec) -> dict[str, Any]:
    """An alarm on the component's 5xx responses: a rolling update that sets it off during
    a bake period is rolled back (AutoRollbackConfiguration)."""
    return {
        "AlarmName": rollback_alarm_name(spec.name),
        "AlarmDescription": "roll back an inference-component update that returns 5xx",
        "Namespace": "AWS/SageMaker",
        "MetricName": "Invocation5XXErrors",
        "Dimensions": [{"Name": "InferenceComponentName", "Value": component_name(spec.name)}],
        "Statistic": "Sum",
        "Period": 60,
        "EvaluationPeriods": 1,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "notBreaching",
        "Tags": tag_list(spec.name),
    }


def update_request(spec: DeploySpec, create: dict[str, Any]) -> dict[str, Any]:
    """UpdateInferenceComponent for a changed model: the new specification rolled out
    a batch of copies at a time; the copy count stays where autoscaling put it."""
    startup = create["Specification"]["StartupParameters"]
    budget = (
        startup["ModelDataDownloadTimeoutInSeconds"]
        + startup["ContainerStartupHealthCheckTimeoutInSeconds"]
        + 2 * ROLLING_BAKE_S
    )
    return {
        "InferenceComponentName": create["InferenceComponentName"],
        "Specification": create["Specification"],
        "DeploymentConfig": {
            "RollingUpdatePolicy": {
                "MaximumBatchSize": {"Type": "CAPACITY_PERCENT", "Value": ROLLING_BATCH_PERCENT},
                "WaitIntervalInSeconds": ROLLING_BAKE_S,
                # UpdateInferenceComponent allows 600-28800 s for the whole rollout.
                "MaximumExecutionTimeoutInSeconds": min(28800, max(600, budget)),
                "RollbackMaximumBatchSize": {"Type": "CAPACITY_PERCENT", "Value": 100},
            },
            "AutoRollbackConfiguration": {
                "Alarms": [{"AlarmName": rollback_alarm_name(spec.name)}]
            },
        },
    }


def specification_changed(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether a described component (DescribeInferenceComponent) serves something else
    than `wanted` (CreateInferenceComponent's Specification): another model (models are
    immutable and named by a hash of image and environment) or other start-up limits."""
    spec = current.get("Specification") or {}
    return (
        spec.get("ModelName") != wanted["ModelName"]
        or (spec.get("StartupParameters") or {}) != wanted["StartupParameters"]
    )


def autoscaling_requests(spec: DeploySpec) -> dict[str, dict[str, Any]]:
    """Bodies for register_scalable_target, two put_scaling_policy calls and the alarm (its
    AlarmActions hold a placeholder until the step policy's ARN is known)."""
    component = component_name(spec.name)
    rid = f"inference-component/{component}"
    common = {"ServiceNamespace": "sagemaker", "ResourceId": rid, "ScalableDimension": DIMENSION}
    return {
        "register_scalable_target": {
            **common,
            "MinCapacity": 0,
            "MaxCapacity": spec.max_instances,
            "Tags": tag_map(spec.name),
        },
        "target_tracking": {
            **common,
            "PolicyName": f"{component}-concurrency",
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": CONCURRENCY_TARGET_PER_COPY,
                "PredefinedMetricSpecification": {"PredefinedMetricType": CONCURRENCY_METRIC},
                "ScaleInCooldown": ASYNC_SCALING.scale_in_cooldown_s,
                "ScaleOutCooldown": ASYNC_SCALING.scale_out_cooldown_s,
            },
        },
        "step_scaling": {
            **common,
            "PolicyName": f"{component}-scale-out-from-zero",
            "PolicyType": "StepScaling",
            "StepScalingPolicyConfiguration": {
                "AdjustmentType": "ChangeInCapacity",
                "MetricAggregationType": "Maximum",
                "Cooldown": ASYNC_SCALING.step_cooldown_s,
                "StepAdjustments": [
                    {
                        "MetricIntervalLowerBound": 0.0,
                        "ScalingAdjustment": ASYNC_SCALING.step_adjustment_instances,
                    }
                ],
            },
        },
        "alarm": {
            "AlarmName": f"{component}-no-capacity",
            "Namespace": "AWS/SageMaker",
            "MetricName": "NoCapacityInvocationFailures",
            "Dimensions": [{"Name": "InferenceComponentName", "Value": component}],
            "Statistic": "Maximum",
            "Period": ASYNC_SCALING.backlog_alarm_period_s,
            "EvaluationPeriods": ASYNC_SCALING.backlog_alarm_evaluation_periods,
            "Threshold": 1.0,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": ["<arn of the step scaling policy>"],
            "Tags": tag_list(spec.name),
        },
    }


def ensure(
    plan: Plan,
    clients: AwsClients,
    spec: DeploySpec,
    model_name: str,
    *,
    model_bytes: int | None,
    wait: bool = True,
    poll_s: float = 15.0,
    timeout_s: float = 3600.0,
    progress: Progress = print,
) -> None:
    sagemaker = clients.sagemaker
    request = component_request(spec, model_name, model_bytes=model_bytes)
    name = request["InferenceComponentName"]
    alarm = rollback_alarm_request(spec)
    update = update_request(spec, request)

    def put_rollback_alarm() -> tuple[str, None]:
        found = clients.cloudwatch.describe_alarms(AlarmNames=[alarm["AlarmName"]])
        if found["MetricAlarms"]:
            return UNCHANGED, None
        clients.cloudwatch.put_metric_alarm(**alarm)
        return CREATED, None

    plan.step(
        f"alarm {alarm['AlarmName']} (rolls back a component update that returns 5xx)",
        put_rollback_alarm,
        calls=[ApiCall("cloudwatch", "PutMetricAlarm", alarm)],
    )

    def create_or_update() -> tuple[str, None]:
        try:
            current = sagemaker.describe_inference_component(InferenceComponentName=name)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ValidationException":
                raise
            sagemaker.create_inference_component(**request)
            return CREATED, None
        if not specification_changed(current, request["Specification"]):
            return UNCHANGED, None
        # A new model would otherwise be created and never served.
        sagemaker.update_inference_component(**update)
        return UPDATED, None

    plan.step(
        f"inference component {name} -> model {model_name} "
        "(created, or rolled out with automatic rollback)",
        create_or_update,
        calls=[
            ApiCall("sagemaker", "CreateInferenceComponent", request),
            ApiCall("sagemaker", "UpdateInferenceComponent", update),
        ],
    )
    if wait and not plan.dry_run:
        # Autoscaling can register a component's copy count only once it exists and runs.
        wait_for_inference_component(
            sagemaker, name, poll_s=poll_s, timeout_s=timeout_s, progress=progress
        )
    reqs = autoscaling_requests(spec)
    aas = clients.application_autoscaling

    def scale() -> tuple[str, None]:
        rid = reqs["register_scalable_target"]["ResourceId"]
        targets = aas.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[rid])[
            "ScalableTargets"
        ]
        policies = {
            p["PolicyName"]: p["PolicyARN"]
            for p in aas.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=rid)[
                "ScalingPolicies"
            ]
        }
        alarms = clients.cloudwatch.describe_alarms(AlarmNames=[reqs["alarm"]["AlarmName"]])[
            "MetricAlarms"
        ]
        step_name = reqs["step_scaling"]["PolicyName"]
        if (
            targets
            and reqs["target_tracking"]["PolicyName"] in policies
            and alarms
            and alarms[0]["AlarmActions"] == [policies.get(step_name)]
        ):
            return UNCHANGED, None
        # register/put are upserts on AWS; the alarm needs the step policy's ARN.
        aas.register_scalable_target(**reqs["register_scalable_target"])
        aas.put_scaling_policy(**reqs["target_tracking"])
        step_arn = aas.put_scaling_policy(**reqs["step_scaling"])["PolicyARN"]
        clients.cloudwatch.put_metric_alarm(**{**reqs["alarm"], "AlarmActions": [step_arn]})
        return CREATED, None

    plan.step(
        "inference component autoscaling (min 0 copies, alarm -> step policy)",
        scale,
        calls=[
            ApiCall(
                "application-autoscaling",
                "RegisterScalableTarget",
                reqs["register_scalable_target"],
            ),
            ApiCall("application-autoscaling", "PutScalingPolicy", reqs["target_tracking"]),
            ApiCall("application-autoscaling", "PutScalingPolicy", reqs["step_scaling"]),
            ApiCall("cloudwatch", "PutMetricAlarm", reqs["alarm"]),
        ],
    )
