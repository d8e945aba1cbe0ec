"""`gen3d deploy`: model, endpoint config, endpoint (+ bucket, topics, logs, autoscaling,
upload trigger for async), each step idempotent, waiting until InService."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from gen3d.aws import autoscaling, endpoint_spec, inference_components, notify, quotas, storage
from gen3d.aws import upload_trigger as trigger
from gen3d.aws.clients import AwsClients, tag_list
from gen3d.aws.endpoint_spec import VARIANT, DeploySpec
from gen3d.aws.errors import AwsCommandError
from gen3d.aws.logs import (
    endpoint_log_group,
    ensure_log_group,
    inference_component_log_group,
    lambda_log_group,
)
from gen3d.aws.monitoring import ensure_monitoring
from gen3d.aws.plan import CREATED, UNCHANGED, UPDATED, ApiCall, Plan
from gen3d.aws.scaling_params import ASYNC_SCALING, IDLE_MINUTES_RANGE, AsyncScaling
from gen3d.aws.waiters import wait_for_endpoint


@dataclass
class DeployOptions:
    bucket: str | None = None
    lifecycle: storage.Lifecycle = field(default_factory=storage.Lifecycle)
    log_retention_days: int = 30
    wait: bool = True
    poll_s: float = 15.0
    timeout_s: float = 3600.0
    upload_trigger_role: str | None = None  # set: package and wire the upload Lambda
    scale_to_zero: bool = False  # realtime only: inference components with min 0 copies
    # async only: minutes of empty backlog before the scale-in to zero (None: the default)
    idle_minutes: int | None = None

    @property
    def scaling(self) -> AsyncScaling:
        if self.idle_minutes is None:
            return ASYNC_SCALING
        return ASYNC_SCALING.with_idle_minutes(self.idle_minutes)


@dataclass
class DeployResult:
    endpoint: str
    endpoint_config: str
    model: str
    bucket: str | None
    changes: list[tuple[str, str]]


def deploy(
    spec: DeploySpec, clients: AwsClients, plan: Plan, options: DeployOptions
) -> DeployResult:
    endpoint_spec.validate(spec)
    if options.scale_to_zero and spec.mode != "realtime":
        raise AwsCommandError(
            "--scale-to-zero applies to --mode realtime (inference "
            "components); --mode async scales to zero by itself"
        )
    if options.upload_trigger_role and spec.mode != "async":
        raise AwsCommandError("--upload-trigger-role needs --mode async")
    if options.idle_minutes is not None and spec.mode != "async":
        raise AwsCommandError(
            "--idle-minutes applies to --mode async (the empty-backlog scale-in); "
            "inference components scale in through target tracking"
        )
    low, high = IDLE_MINUTES_RANGE
    if options.idle_minutes is not None and not low <= options.idle_minutes <= high:
        raise AwsCommandError(f"--idle-minutes must be {low}-{high}, not {options.idle_minutes}")
    region = clients.region
    account = plan.read("account id (STS)", clients.account_id, str, placeholder="<account-id>")
    # Before anything is made: a new account's GPU quotas are 0.
    hard, soft = quota_needs(spec, options)
    quotas.preflight(plan, clients, hard, f"deployment {spec.name}", soft=soft)
    model_bytes = _model_bytes(plan, clients, spec)
    if spec.mode == "serverless":
        endpoint_spec.check_serverless_image_size(spec, _image_bytes(plan, clients, spec))

    bucket = None
    async_paths: dict[str, Any] = {}
    if spec.mode == "async":
        bucket = options.bucket or storage.default_bucket_name(spec.name, account, region)
        storage.ensure_bucket(plan, clients.s3, bucket, spec.name, region, options.lifecycle)
        success_name, error_name = notify.topic_names(spec.name)
        success = notify.ensure_topic(plan, clients.sns, success_name, spec.name)
        error = notify.ensure_topic(plan, clients.sns, error_name, spec.name)
        if spec.notify_email:
            for topic in (success, error):
                notify.ensure_email_subscription(plan, clients.sns, topic, spec.notify_email)
        async_paths = {
            "output_path": f"s3://{bucket}/{storage.OUTPUT_PREFIX}",
            "failure_path": f"s3://{bucket}/{storage.FAILURE_PREFIX}",
            "success_topic": success,
            "error_topic": error,
        }

    ensure_log_group(
        plan, clients.logs, endpoint_log_group(spec.name), spec.name, options.log_retention_days
    )
    if options.scale_to_zero:  # components log to a group of their own
        ensure_log_group(
            plan,
            clients.logs,
            inference_component_log_group(inference_components.component_name(spec.name)),
            spec.name,
            options.log_retention_days,
        )
    model = endpoint_spec.model_request(spec)
    _ensure_model(plan, clients.sagemaker, model)
    if options.scale_to_zero:
        config = inference_components.endpoint_config_request(spec, model_bytes=model_bytes)
    else:
        config = endpoint_spec.endpoint_config_request(
            spec, model["ModelName"], model_bytes=model_bytes, **async_paths
        )
    _ensure_endpoint_config(plan, clients.sagemaker, config)
    # SNS error topic, alarms, dashboard; the blue/green rollout for real-time endpoints
    rollout = ensure_monitoring(
        plan,
        clients,
        spec,
        error_topic=async_paths.get("error_topic"),
        inference_components=options.scale_to_zero,
    )
    try:
        _ensure_endpoint(plan, clients, spec, config, options, deployment_config=rollout)
    except quotas.QuotaError:
        raise  # no endpoint was made or changed: nothing to put back
    except BaseException:
        # Whatever happened to the endpoint (an update that failed or timed out),
        # autoscaling is put back: an async endpoint without it would stay at its
        # initial instance count around the clock.
        if spec.mode == "async":
            _restore_async_autoscaling(plan, clients, spec, options.scaling)
        raise
    if spec.mode == "async":
        _ensure_async_autoscaling(plan, clients, spec, options.scaling)
    if options.scale_to_zero:
        inference_components.ensure(
            plan,
            clients,
            spec,
            model["ModelName"],
            model_bytes=model_bytes,
            wait=options.wait,
            poll_s=options.poll_s,
            timeout_s=options.timeout_s,
            progress=plan.out,
        )
    if spec.mode == "async":
        if options.upload_trigger_role:
            assert bucket is not None
            # Made here, tagged and with a retention, before Lambda makes it untagged
            # with none: teardown then finds and deletes it.
            ensure_log_group(
                plan,
                clients.logs,
                lambda_log_group(trigger.function_name(spec.name)),
                spec.name,
                options.log_retention_days,
            )
            arn = trigger.ensure_function(
                plan,
                clients.client("lambda"),
                deployment=spec.name,
                endpoint=spec.name,
                role_arn=options.upload_trigger_role,
                input_prefix=storage.INPUT_PREFIX,
            )
            trigger.ensure_s3_permission(
                plan, clients.client("lambda"), deployment=spec.name, bucket=bucket, account=account
            )
            trigger.ensure_bucket_notification(
                plan,
                clients.s3,
                deployment=spec.name,
                bucket=bucket,
                function_arn=arn,
                input_prefix=storage.INPUT_PREFIX,
            )
    return DeployResult(
        endpoint=spec.name,
        endpoint_config=config["EndpointConfigName"],
        model=model["ModelName"],
        bucket=bucket,
        changes=plan.changes,
    )


def quota_needs(
    spec: DeploySpec, options: DeployOptions
) -> tuple[list[quotas.Need], list[quotas.Need]]:
    """(needs that must fit now, autoscaling maxima that only warn) of this deployment."""
    if spec.mode == "serverless":
        need = quotas.Need(
            quotas.SERVERLESS_QUOTA,
            quotas.SERVERLESS,
            quotas.SERVERLESS,
            spec.max_concurrency,
            exclude_endpoint=spec.name,
        )
        return [need], []
    name = quotas.quota_name(spec.instance_type, "endpoint")

    def need(count: int) -> quotas.Need:
        return quotas.Need(name, spec.instance_type, "endpoint", count, spec.name)

    initial = 1 if options.scale_to_zero else spec.initial_instances
    scales = spec.mode == "async" or options.scale_to_zero
    return [need(initial)], [
        need(spec.max_instances)
    ] if scales and spec.max_instances > initial else []


def _ensure_async_autoscaling(
    plan: Plan, clients: AwsClients, spec: DeploySpec, scaling: AsyncScaling
) -> None:
    autoscaling.ensure_async_autoscaling(
        plan,
        clients.application_autoscaling,
        clients.cloudwatch,
        endpoint=spec.name,
        variant=VARIANT,
        max_instances=spec.max_instances,
        deployment=spec.name,
        scaling=scaling,
    )


def _restore_async_autoscaling(
    plan: Plan, clients: AwsClients, spec: DeploySpec, scaling: AsyncScaling
) -> None:
    try:
        _ensure_async_autoscaling(plan, clients, spec, scaling)
    except Exception as exc:  # the endpoint's own error is the one to report
        plan.note(
            f"could not restore autoscaling ({exc}); run the same `gen3d deploy` again "
            "once the endpoint is InService"
        )


def _model_bytes(plan: Plan, clients: AwsClients, spec: DeploySpec) -> int | None:
    if not spec.model_data:
        return None

    def fetch() -> int:
        bkt, key = storage.parse_s3_uri(spec.model_data or "")
        try:
            if spec.uncompressed_model:  # every object under the prefix is copied
                pages = clients.s3.get_paginator("list_objects_v2").paginate(Bucket=bkt, Prefix=key)
                sizes = [o["Size"] for page in pages for o in page.get("Contents", [])]
                if not sizes:
                    raise AwsCommandError(f"--model-data {spec.model_data}: no objects under it")
                return sum(sizes)
            return int(clients.s3.head_object(Bucket=bkt, Key=key)["ContentLength"])
        except ClientError as exc:
            raise AwsCommandError(
                f"--model-data {spec.model_data}: cannot read it "
                f"({exc.response['Error'].get('Code')})"
            ) from None

    return plan.read(f"size of {spec.model_data}", fetch, lambda n: f"{n / 1e6:.1f} MB")


def _image_bytes(plan: Plan, clients: AwsClients, spec: DeploySpec) -> int | None:
    """The pushed image's size from ECR (None for images outside ECR)."""
    host, _, rest = spec.image.partition("/")
    if ".dkr.ecr." not in host:
        plan.note(f"{spec.image} is not in ECR; its size (10 GB serverless limit) is unchecked")
        return None
    repo, _, ref = rest.partition("@") if "@" in rest else rest.partition(":")
    image_id = {"imageDigest": ref} if "@" in rest else {"imageTag": ref or "latest"}

    def fetch() -> int:
        try:
            details = clients.ecr.describe_images(repositoryName=repo, imageIds=[image_id])
        except ClientError as exc:
            raise AwsCommandError(
                f"--image {spec.image}: not found in ECR ({exc.response['Error'].get('Code')})"
            ) from None
        return int(details["imageDetails"][0].get("imageSizeInBytes") or 0)

    return plan.read(f"size of {spec.image} in ECR", fetch, lambda n: f"{n / 1e9:.2f} GB")


def _ensure_model(plan: Plan, sagemaker: Any, request: dict[str, Any]) -> None:
    name = request["ModelName"]

    def apply() -> tuple[str, None]:
        if _exists(sagemaker.describe_model, ModelName=name):
            return UNCHANGED, None
        sagemaker.create_model(**request)
        return CREATED, None

    plan.step(f"model {name}", apply, calls=[ApiCall("sagemaker", "CreateModel", request)])


def _ensure_endpoint_config(plan: Plan, sagemaker: Any, request: dict[str, Any]) -> None:
    name = request["EndpointConfigName"]

    def apply() -> tuple[str, None]:
        if _exists(sagemaker.describe_endpoint_config, EndpointConfigName=name):
            return UNCHANGED, None
        sagemaker.create_endpoint_config(**request)
        return CREATED, None

    plan.step(
        f"endpoint config {name}",
        apply,
        calls=[ApiCall("sagemaker", "CreateEndpointConfig", request)],
    )


def _variant_instance_type(sagemaker: Any, config: str) -> str | None:
    variants = sagemaker.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"]
    return variants[0].get("InstanceType") if variants else None


def _ensure_endpoint(
    plan: Plan,
    clients: AwsClients,
    spec: DeploySpec,
    config: dict[str, Any],
    options: DeployOptions,
    deployment_config: dict[str, Any] | None = None,
) -> None:
    """Create the endpoint, or move it to `config` (with `deployment_config`'s rollout and
    rollback, when given); wait (unless --no-wait) until it is InService on that config."""
    sagemaker = clients.sagemaker
    endpoint, config_name = spec.name, config["EndpointConfigName"]
    rollout = {"DeploymentConfig": deployment_config} if deployment_config else {}
    create = {
        "EndpointName": endpoint,
        "EndpointConfigName": config_name,
        "Tags": tag_list(spec.name),
        **rollout,
    }
    update = {"EndpointName": endpoint, "EndpointConfigName": config_name, **rollout}
    waited = False

    def wait() -> None:
        nonlocal waited
        waited = True
        wait_for_endpoint(
            sagemaker,
            endpoint,
            poll_s=options.poll_s,
            timeout_s=options.timeout_s,
            progress=plan.out,
            config=config_name,
        )

    def apply() -> tuple[str, None]:
        try:
            current = sagemaker.describe_endpoint(EndpointName=endpoint)
        except ClientError as exc:
            if not _not_found(exc):
                raise
            try:
                sagemaker.create_endpoint(**create)
            except ClientError as exc:
                raise _quota_error(exc, spec, options, clients.region) from None
            return CREATED, None
        if current["EndpointStatus"] == "Failed":
            raise AwsCommandError(
                f"endpoint {endpoint} is Failed ({current.get('FailureReason', 'no reason')}); "
                f"run `gen3d teardown --name {spec.name}` and deploy again"
            )
        if current["EndpointConfigName"] == config_name:
            return UNCHANGED, None
        # AWS refuses an update that changes the instance type of a variant registered for
        # autoscaling; any other change (a new model, say) updates with autoscaling in
        # place (docs: endpoint-scaling-update.html). Deregister only then; deploy puts
        # the target and its policies back afterwards, whatever happens here.
        aas = clients.application_autoscaling
        rid = autoscaling.resource_id(endpoint, VARIANT)
        registered = aas.describe_scalable_targets(
            ServiceNamespace=autoscaling.NAMESPACE, ResourceIds=[rid]
        )["ScalableTargets"]
        old_type = _variant_instance_type(sagemaker, current["EndpointConfigName"])
        new_type = config["ProductionVariants"][0].get("InstanceType")
        if registered and old_type != new_type:
            plan.out(
                f"  note: {old_type} -> {new_type}: autoscaling is deregistered for the "
                "update (AWS requires it) and registered again after it, so deploy waits"
            )
            aas.deregister_scalable_target(
                ServiceNamespace=autoscaling.NAMESPACE,
                ResourceId=rid,
                ScalableDimension=autoscaling.DIMENSION,
            )
            _update(sagemaker, update, spec, options, clients.region)
            wait()  # the target can be registered again only on the updated variant
            return UPDATED, None
        _update(sagemaker, update, spec, options, clients.region)
        return UPDATED, None

    plan.step(
        f"endpoint {endpoint} -> {config_name}",
        apply,
        calls=[
            ApiCall("sagemaker", "CreateEndpoint", create),
            ApiCall("sagemaker", "UpdateEndpoint", update),
        ],
    )
    if options.wait and not plan.dry_run and not waited:
        wait()


def _update(
    sagemaker: Any, update: dict[str, Any], spec: DeploySpec, options: DeployOptions, region: str
) -> None:
    try:
        sagemaker.update_endpoint(**update)
    except ClientError as exc:
        raise _quota_error(exc, spec, options, region) from None


def _quota_error(
    exc: ClientError, spec: DeploySpec, options: DeployOptions, region: str
) -> Exception:
    """ResourceLimitExceeded as the quota guidance; any other error unchanged."""
    if exc.response.get("Error", {}).get("Code") != "ResourceLimitExceeded":
        return exc
    (need,), _ = quota_needs(spec, options)
    return quotas.limit_exceeded(
        exc,
        need,
        region,
        kept=f"The model and endpoint config stay: the same `gen3d deploy` goes on from them "
        f"once the quota is raised, and `gen3d teardown --name {spec.name}` removes them.",
    )


def _not_found(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    return error.get("Code") in ("ValidationException", "ResourceNotFound") and (
        "not find" in error.get("Message", "")
        or "not exist" in error.get("Message", "")
        or "not found" in error.get("Message", "").lower()
    )


def _exists(describe: Any, **kwargs: Any) -> bool:
    try:
        describe(**kwargs)
        return True
    except ClientError as exc:
        if _not_found(exc):
            return False
        raise
