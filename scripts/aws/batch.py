"""`gen3d batch`: a batch-transform job on the deployment's model.

MaxConcurrentTransforms, BatchStrategy and MaxPayloadInMB are left unset on purpose:
SageMaker then reads them from the container's GET /execution-parameters, which derives
them from the server's own batch settings.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from botocore.exceptions import ClientError

from gen3d.aws.clients import AwsClients, has_tag, tag_list
from gen3d.aws.errors import AwsCommandError
from gen3d.aws.plan import CREATED, UNCHANGED, Plan
from gen3d.aws.storage import parse_s3_uri

DEFAULT_CPU_INSTANCE = "ml.m5.xlarge"


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
) -> dict[str, Any]:
    parse_s3_uri(input_uri)
    parse_s3_uri(output_uri)
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
        "TransformResources": {"InstanceType": instance_type, "InstanceCount": instance_count},
    }
    # Same inputs, same job: a second run finds the first job instead of starting another.
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:8]
    return {
        "TransformJobName": f"{deployment}-batch-{digest}",
        **body,
        "Tags": tag_list(deployment),
    }


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
) -> str:
    if plan.dry_run:
        model_name, default_type = model or f"<model of deployment {deployment}>", None
    else:
        model_name, default_type = (
            (model, None) if model else deployment_model(clients.sagemaker, deployment)
        )
    request = transform_job_request(
        deployment,
        model_name,
        input_uri,
        output_uri,
        instance_type=instance_type or default_type or DEFAULT_CPU_INSTANCE,
        instance_count=instance_count,
        content_type=content_type,
        accept=accept,
    )
    name = request["TransformJobName"]

    def apply() -> tuple[str, str]:
        try:
            clients.sagemaker.describe_transform_job(TransformJobName=name)
            return UNCHANGED, name
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in ("ValidationException", "ResourceNotFound"):
                raise
        clients.sagemaker.create_transform_job(**request)
        return CREATED, name

    return plan.step(
        f"transform job {name} ({input_uri} -> {output_uri})",
        apply,
        request=request,
        placeholder=name,
    )
