"""`gen3d batch`: a batch-transform job on the deployment's model.

MaxConcurrentTransforms, BatchStrategy and MaxPayloadInMB are left unset on purpose:
SageMaker then reads them from the container's GET /execution-parameters, which derives
them from the server's own batch settings. What the job does set:

- TransformAmiVersion on GPU instances: without it a GPU batch job gets driver 470
  (CUDA 11.4), too old for every CUDA image we build (container/platform.json,
  batch_amis); a flavor newer than every batch AMI's CUDA is refused with the reason.
- ModelClientConfig.InvocationsTimeoutInSeconds: at least the model's own request
  deadline (GEN3D_REQUEST_TIMEOUT_S; SageMaker's default is 600 s, shorter than an async
  model's 900 s), so SageMaker does not give up on, and retry, a record still running.
- Only instance types batch transform offers (botocore's TransformInstanceType enum).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from gen3d.aws import platform, quotas
from gen3d.aws.clients import AwsClients, has_tag, model_enum, tag_list
from gen3d.aws.endpoint_spec import flavor_of_image
from gen3d.aws.errors import AwsCommandError
from gen3d.aws.plan import CREATED, UNCHANGED, ApiCall, Plan
from gen3d.aws.storage import parse_s3_uri
from gen3d.serve.settings import Settings, SettingsError

DEFAULT_CPU_INSTANCE = "ml.m5.xlarge"
INVOCATION_TIMEOUT_MAX_S = 3600  # ModelClientConfig.InvocationsTimeoutInSeconds: 1-3600
INVOCATION_MARGIN_S = 30  # decoding, encoding and the upload of the result


@dataclass(frozen=True)
class BatchModel:
    """The model a job runs, as far as the job's settings depend on it."""

    name: str
    instance_type: str | None = None  # the endpoint's, when it has one
    flavor: str | None = None  # of its image
    environment: dict[str, str] = field(default_factory=dict)


def batch_settings(instance_type: str, model: BatchModel) -> tuple[str | None, int]:
    """(TransformAmiVersion, InvocationsTimeoutInSeconds) for `model` on `instance_type`;
    AwsCommandError when batch transform cannot run it there."""
    offered = model_enum("sagemaker", "TransformInstanceType")
    if instance_type not in offered:
        gpus = ", ".join(
            t for t in offered if platform.is_gpu_instance(t) and t.endswith(".xlarge")
        )
        raise AwsCommandError(
            f"--instance-type {instance_type}: batch transform does not offer it "
            f"(CreateTransformJob's instance types); GPU choices include {gpus}"
        )
    problem = platform.gpu_problem(instance_type, model.flavor)
    if problem:
        raise AwsCommandError(problem)
    try:
        ami = platform.transform_ami_version(instance_type, model.flavor)
        deadline = Settings.from_env(model.environment).request_timeout_s
    except (ValueError, SettingsError) as exc:
        raise AwsCommandError(str(exc)) from None
    timeout = min(INVOCATION_TIMEOUT_MAX_S, math.ceil(deadline) + INVOCATION_MARGIN_S)
    return ami, timeout


def transform_job_request(
    deployment: str,
    model_name: str,
    input_uri: str,
    output_uri: str,
    *,
    instance_type: str,
    instance_count: int = 1,
    content_type: str = "image/png",
    accept: str | None = None,
    ami_version: str | None = None,
    invocation_timeout_s: int | None = None,
) -> dict[str, Any]:
    parse_s3_uri(input_uri)
    parse_s3_uri(output_uri)
    resources: dict[str, Any] = {"InstanceType": instance_type, "InstanceCount": instance_count}
    if ami_version:
        resources["TransformAmiVersion"] = ami_version
    body: dict[str, Any] = {
        "ModelName": model_name,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}},
            "ContentType": content_type,
            "SplitType": "None",  # one image file = one request
        },
        "TransformOutput": {
            "S3OutputPath": output_uri,
            "AssembleWith": "None",
            **({"Accept": accept} if accept else {}),
        },
        "TransformResources": resources,
    }
    if invocation_timeout_s:
        body["ModelClientConfig"] = {"InvocationsTimeoutInSeconds": invocation_timeout_s}
    # Same inputs, same job: a second run finds the first job instead of starting another.
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:8]
    return {
        "TransformJobName": f"{deployment}-batch-{digest}",
        **body,
        "Tags": tag_list(deployment),
    }


def describe_batch_model(sagemaker: Any, name: str, instance_type: str | None) -> BatchModel:
    try:
        container = sagemaker.describe_model(ModelName=name).get("PrimaryContainer") or {}
    except ClientError as exc:
        raise AwsCommandError(
            f"model {name}: {exc.response['Error'].get('Message', 'cannot describe it')}"
        ) from None
    return BatchModel(
        name=name,
        instance_type=instance_type,
        flavor=flavor_of_image(container.get("Image", "")),
        environment=dict(container.get("Environment") or {}),
    )


def deployment_model(sagemaker: Any, deployment: str) -> tuple[str, str | None]:
    """(model name, instance type) the deployment's endpoint serves; falls back to the
    newest model tagged for the deployment when there is no endpoint."""
    try:
        endpoint = sagemaker.describe_endpoint(EndpointName=deployment)
        config = sagemaker.describe_endpoint_config(
            EndpointConfigName=endpoint["EndpointConfigName"]
        )
        variant = config["ProductionVariants"][0]
        if variant.get("ModelName"):
            return variant["ModelName"], variant.get("InstanceType")
    except ClientError:
        pass
    models = [
        m
        for page in sagemaker.get_paginator("list_models").paginate(NameContains=deployment)
        for m in page["Models"]
    ]
    models.sort(key=lambda m: m["CreationTime"], reverse=True)
    for m in models:
        if has_tag(sagemaker.list_tags(ResourceArn=m["ModelArn"])["Tags"], deployment):
            return m["ModelName"], None
    raise AwsCommandError(f"no model for deployment {deployment}: run `gen3d deploy` first")


def start_transform_job(
    plan: Plan,
    clients: AwsClients,
    deployment: str,
    input_uri: str,
    output_uri: str,
    *,
    instance_type: str | None,
    instance_count: int,
    content_type: str,
    accept: str | None,
    model: str | None,
    flavor: str | None = None,
) -> str:
    if plan.dry_run:
        chosen = BatchModel(model or f"<model of deployment {deployment}>", flavor=flavor)
        if flavor is None:
            plan.note(
                "a dry run does not read the model's image: pass --flavor to check it "
                "against the batch AMIs (the real run reads it)"
            )
    else:
        name, default_type = (
            (model, None) if model else deployment_model(clients.sagemaker, deployment)
        )
        chosen = describe_batch_model(clients.sagemaker, name, default_type)
        if flavor:
            chosen = BatchModel(chosen.name, chosen.instance_type, flavor, chosen.environment)
    instance = instance_type or chosen.instance_type or DEFAULT_CPU_INSTANCE
    ami, invocation_timeout = batch_settings(instance, chosen)
    request = transform_job_request(
        deployment,
        chosen.name,
        input_uri,
        output_uri,
        instance_type=instance,
        instance_count=instance_count,
        content_type=content_type,
        accept=accept,
        ami_version=ami,
        invocation_timeout_s=invocation_timeout,
    )
    name = request["TransformJobName"]
    need = quotas.Need(
        quotas.quota_name(instance, "transform"), instance, "transform", instance_count
    )

    def apply() -> tuple[str, str]:
        try:
            clients.sagemaker.describe_transform_job(TransformJobName=name)
            return UNCHANGED, name
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in ("ValidationException", "ResourceNotFound"):
                raise
        # Only a job not started yet needs the quota (a re-run finds the first job).
        quotas.preflight(plan, clients, [need], f"transform job {name}")
        try:
            clients.sagemaker.create_transform_job(**request)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceLimitExceeded":
                raise
            raise quotas.limit_exceeded(exc, need, clients.region, "No job was started.") from None
        return CREATED, name

    if plan.dry_run:  # the real run checks inside the step, once it knows a job is needed
        quotas.preflight(plan, clients, [need], f"transform job {name}")
    return plan.step(
        f"transform job {name} ({input_uri} -> {output_uri})",
        apply,
        placeholder=name,
        calls=[ApiCall("sagemaker", "CreateTransformJob", request)],
    )
