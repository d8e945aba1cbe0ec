"""Invoke a deployed endpoint: real-time returns the body; async uploads the input to S3,
calls InvokeEndpointAsync and polls the output and failure locations until one appears.

`gen3d invoke --endpoint NAME` (scripts/cli/commands/invoke.py) calls `invoke_endpoint`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from gen3d.aws.errors import AwsCommandError
from gen3d.aws.storage import CLI_INPUT_PREFIX, parse_s3_uri

MODES = ("auto", "realtime", "async")
_EXTENSIONS = {
    "image/png": ".png",
    "application/x-image": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "application/json": ".json",
}


class InvokeError(AwsCommandError):
    """The endpoint answered with an error, the async request failed, or it timed out."""


def endpoint_is_async(sagemaker: Any, endpoint_name: str) -> dict[str, Any] | None:
    """The endpoint config's AsyncInferenceConfig, or None for a real-time endpoint."""
    try:
        endpoint = sagemaker.describe_endpoint(EndpointName=endpoint_name)
    except ClientError as exc:
        raise InvokeError(f"endpoint {endpoint_name}: {exc.response['Error']['Message']}") from None
    if endpoint["EndpointStatus"] != "InService":
        raise InvokeError(
            f"endpoint {endpoint_name} is {endpoint['EndpointStatus']}, not InService"
        )
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    return config.get("AsyncInferenceConfig") or None


def invoke_endpoint(
    endpoint_name: str,
    body: bytes,
    content_type: str,
    accept: str | None,
    *,
    sagemaker: Any,
    runtime: Any,
    s3: Any,
    mode: str = "auto",
    input_s3_uri: str | None = None,
    timeout_s: float = 3600.0,
    poll_s: float = 5.0,
    custom_attributes: str | None = None,
    progress: Callable[[str], None] = print,
) -> bytes:
    """Send `body` to the endpoint and return the result's bytes.

    mode "auto" reads the endpoint config: AsyncInferenceConfig present => async. Async
    uploads `body` to `input_s3_uri` (default: the endpoint's bucket under async/input/;
    pass an empty body with `input_s3_uri` to use an object already in S3).
    """
    if mode not in MODES:
        raise InvokeError(f"mode must be one of {', '.join(MODES)}")
    async_config = None
    if mode != "realtime":
        async_config = endpoint_is_async(sagemaker, endpoint_name)
        if mode == "async" and async_config is None and input_s3_uri is None:
            raise InvokeError(
                f"endpoint {endpoint_name} is real-time (no "
                "AsyncInferenceConfig); use mode realtime"
            )
    if mode == "realtime" or (mode == "auto" and async_config is None):
        return _invoke_realtime(
            runtime, endpoint_name, body, content_type, accept, custom_attributes
        )
    if input_s3_uri is None:
        output_path = (async_config or {}).get("OutputConfig", {}).get("S3OutputPath", "")
        bucket, _ = parse_s3_uri(output_path)
        input_s3_uri = (
            f"s3://{bucket}/{CLI_INPUT_PREFIX}{uuid.uuid4().hex}{_EXTENSIONS.get(content_type, '')}"
        )
    if body:
        bucket, key = parse_s3_uri(input_s3_uri)
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
        progress(f"uploaded {len(body)} bytes to {input_s3_uri}")
    request: dict[str, Any] = {
        "EndpointName": endpoint_name,
        "InputLocation": input_s3_uri,
        "ContentType": content_type,
        "InvocationTimeoutSeconds": int(min(3600, max(1, timeout_s))),
    }
    if accept:
        request["Accept"] = accept
    if custom_attributes:
        request["CustomAttributes"] = custom_attributes
    try:
        response = runtime.invoke_endpoint_async(**request)
    except ClientError as exc:
        raise InvokeError(
            f"InvokeEndpointAsync {endpoint_name}: {exc.response['Error']['Message']}"
        ) from None
    progress(
        f"queued as {response.get('InferenceId', '?')}; result at {response['OutputLocation']}"
    )
    return poll_async_result(
        s3,
        response["OutputLocation"],
        response.get("FailureLocation"),
        timeout_s=timeout_s,
        poll_s=poll_s,
        progress=progress,
    )


def _invoke_realtime(
    runtime: Any,
    endpoint_name: str,
    body: bytes,
    content_type: str,
    accept: str | None,
    custom_attributes: str | None,
) -> bytes:
    request: dict[str, Any] = {
        "EndpointName": endpoint_name,
        "Body": body,
        "ContentType": content_type,
    }
    if accept:
        request["Accept"] = accept
    if custom_attributes:
        request["CustomAttributes"] = custom_attributes
    try:
        return runtime.invoke_endpoint(**request)["Body"].read()
    except ClientError as exc:
        # ModelError carries the container's own JSON error in the message.
        raise InvokeError(
            f"InvokeEndpoint {endpoint_name}: {exc.response['Error']['Message']}"
        ) from None


def _read_if_present(s3: Any, uri: str) -> bytes | None:
    bucket, key = parse_s3_uri(uri)
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404", "NotFound"):
            return None
        raise


def poll_async_result(
    s3: Any,
    output_uri: str,
    failure_uri: str | None,
    *,
    timeout_s: float,
    poll_s: float,
    progress: Callable[[str], None],
) -> bytes:
    """Poll until the output object exists (return it) or the failure object exists (raise
    with its text); raise on timeout."""
    start = time.monotonic()
    while True:
        result = _read_if_present(s3, output_uri)
        if result is not None:
            progress(f"result ready after {time.monotonic() - start:.0f} s")
            return result
        if failure_uri:
            failure = _read_if_present(s3, failure_uri)
            if failure is not None:
                text = failure.decode("utf-8", "replace").strip()
                raise InvokeError(f"async inference failed ({failure_uri}): {text}")
        elapsed = time.monotonic() - start
        if elapsed >= timeout_s:
            raise InvokeError(
                f"no result after {timeout_s:.0f} s; it may still arrive at {output_uri}"
            )
        progress(f"waiting for {output_uri} ({elapsed:.0f} s)")
        time.sleep(min(poll_s, max(0.0, timeout_s - elapsed)))
