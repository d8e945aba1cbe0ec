"""Upload-to-result: an AWS Lambda handler that sends each new S3 object under the input
prefix to the async endpoint (InvokeEndpointAsync with that object as its input).

Standard library + boto3 only (both are in Lambda's Python runtime); `gen3d deploy
--upload-trigger` zips this one file. Configuration comes from the function's environment:
GEN3D_ENDPOINT_NAME (required), GEN3D_INPUT_PREFIX (default "input/"), GEN3D_ACCEPT.
Results land in the endpoint's S3 output path and SNS announces them.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import unquote_plus

CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".json": "application/json",
}


def content_type_for(key: str) -> str | None:
    return CONTENT_TYPES.get(os.path.splitext(key)[1].lower())


def inference_id_for(key: str) -> str:
    # InferenceId: up to 64 of [A-Za-z0-9-_.]; keeps the results traceable to the upload.
    return re.sub(r"[^A-Za-z0-9._-]", "-", key)[-64:]


def handle(
    event: dict[str, Any],
    runtime: Any,
    *,
    endpoint: str,
    input_prefix: str = "input/",
    accept: str | None = None,
) -> list[dict[str, str]]:
    """Invoke the endpoint for every ObjectCreated record under `input_prefix`; returns one
    entry per invocation (input, output and failure locations) and skips everything else."""
    invoked = []
    for record in event.get("Records", []):
        if not str(record.get("eventName", "")).startswith("ObjectCreated"):
            continue
        bucket = record["s3"]["bucket"]["name"]
        key = unquote_plus(record["s3"]["object"]["key"])  # S3 events URL-encode keys
        content_type = content_type_for(key)
        if not key.startswith(input_prefix) or content_type is None:
            continue
        request = {
            "EndpointName": endpoint,
            "InputLocation": f"s3://{bucket}/{key}",
            "ContentType": content_type,
            "InferenceId": inference_id_for(key),
        }
        if accept:
            request["Accept"] = accept
        response = runtime.invoke_endpoint_async(**request)
        invoked.append(
            {
                "input": request["InputLocation"],
                "output": response.get("OutputLocation", ""),
                "failure": response.get("FailureLocation", ""),
                "inference_id": response.get("InferenceId", ""),
            }
        )
        print(
            f"invoked {endpoint} for {request['InputLocation']} -> {response.get('OutputLocation')}"
        )
    return invoked


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point (Handler: lambda_handler.handler)."""
    import boto3

    runtime = boto3.client("sagemaker-runtime")
    invoked = handle(
        event,
        runtime,
        endpoint=os.environ["GEN3D_ENDPOINT_NAME"],
        input_prefix=os.environ.get("GEN3D_INPUT_PREFIX", "input/"),
        accept=os.environ.get("GEN3D_ACCEPT") or None,
    )
    return {"invoked": invoked}
