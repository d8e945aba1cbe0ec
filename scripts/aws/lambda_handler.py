"""Upload-to-result: an AWS Lambda handler that sends each new S3 object under the input
prefix to the async endpoint (InvokeEndpointAsync with that object as its input).

Standard library + boto3 only (both are in Lambda's Python runtime); `gen3d deploy
--upload-trigger` zips this one file. Configuration comes from the function's environment:
GEN3D_ENDPOINT_NAME (required), GEN3D_INPUT_PREFIX (default "input/"), GEN3D_ACCEPT,
GEN3D_MAX_INPUT_BYTES (the model's body limit; larger objects are skipped, not sent).
Results land in the endpoint's S3 output path and SNS announces them.

Keys are chosen by whoever uploads: each log line is one JSON object with the key as a
JSON string (a key holding newlines cannot start a line of its own, e.g. a forged
embedded-metric object), and a key with control characters is skipped.
"""

from __future__ import annotations

import hashlib
import json
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


DEFAULT_MAX_INPUT_BYTES = 100 * 1024 * 1024  # the async model's GEN3D_MAX_BODY_MB
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_READABLE = re.compile(r"[^A-Za-z0-9._-]")


def inference_id_for(key: str, sequencer: str = "") -> str:
    """InferenceId (at most 64 printable characters): the key's file name, readable, then
    a hash of the whole key and the event's sequencer, so keys that differ only in
    punctuation or early in a long path never share an id, and a repeated delivery of
    one upload keeps its id."""
    digest = hashlib.sha256(f"{key}\n{sequencer}".encode()).hexdigest()[:32]
    name = _READABLE.sub("-", key.rsplit("/", 1)[-1])[:31]
    return f"{name}-{digest}" if name else digest


def log(event: str, **fields: Any) -> None:
    """One log line, one JSON object: whatever a key holds stays inside its string."""
    print(json.dumps({"event": event, **fields}))


def handle(
    event: dict[str, Any],
    runtime: Any,
    *,
    endpoint: str,
    input_prefix: str = "input/",
    accept: str | None = None,
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
) -> list[dict[str, str]]:
    """Invoke the endpoint for every ObjectCreated record under `input_prefix`; returns one
    entry per invocation (input, output and failure locations) and skips everything else:
    other prefixes and types silently, a key with control characters and an object over
    `max_input_bytes` (the model would refuse it) with a log line saying why."""
    invoked = []
    for record in event.get("Records", []):
        if not str(record.get("eventName", "")).startswith("ObjectCreated"):
            continue
        bucket = record["s3"]["bucket"]["name"]
        s3_object = record["s3"]["object"]
        key = unquote_plus(s3_object["key"])  # S3 events URL-encode keys
        content_type = content_type_for(key)
        if not key.startswith(input_prefix) or content_type is None:
            continue
        if _CONTROL.search(key):
            log("skipped", reason="control characters in the key", bucket=bucket, key=key)
            continue
        size = s3_object.get("size")
        if isinstance(size, int) and size > max_input_bytes:
            log(
                "skipped",
                reason=f"object of {size} bytes is over the model's {max_input_bytes}",
                bucket=bucket,
                key=key,
            )
            continue
        request = {
            "EndpointName": endpoint,
            "InputLocation": f"s3://{bucket}/{key}",
            "ContentType": content_type,
            "InferenceId": inference_id_for(key, str(s3_object.get("sequencer", ""))),
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
        log(
            "invoked",
            endpoint=endpoint,
            input=request["InputLocation"],
            output=response.get("OutputLocation", ""),
            inference_id=request["InferenceId"],
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
        max_input_bytes=int(os.environ.get("GEN3D_MAX_INPUT_BYTES", DEFAULT_MAX_INPUT_BYTES)),
    )
    return {"invoked": invoked}
