"""Async endpoints: upload the body to S3, InvokeEndpointAsync, then wait on the output
object or the failure object (AsyncJob), with progress lines and a deadline.

The input goes under `async/input/` by default, not `input/`: `gen3d deploy` wires an S3
trigger on `input/` that would invoke the endpoint a second time.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gen3d.client.endpoint import EndpointInfo, aws_error
from gen3d.client.errors import (
    AsyncInferenceError,
    DeadlineExceededError,
    InputError,
    from_error_body,
)
from gen3d.client.inputs import Request
from gen3d.client.transport import Limits, Reply

INPUT_PREFIX = "async/input/"
# InvokeEndpointAsync's InvocationTimeoutSeconds: 1..3600 (botocore sagemaker-runtime model).
MAX_INVOCATION_TIMEOUT_S = 3600


def parse_s3_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket:
        raise InputError(f"not an S3 URI: {uri!r} (expected s3://bucket/key)")
    return bucket, key


@dataclass
class AsyncJob:
    """A queued async request. `wait()` returns its result (or raises its typed error);
    `done()` says whether either object exists yet, without waiting."""

    endpoint: str
    inference_id: str
    input_location: str
    output_location: str
    failure_location: str | None
    _s3: Any = field(repr=False)
    _decode: Callable[[Reply], Any] = field(repr=False)
    poll_s: float = 5.0
    progress: Callable[[str], None] = field(default=lambda _: None, repr=False)

    def done(self) -> bool:
        return self._read(self.output_location) is not None or (
            self.failure_location is not None and self._read(self.failure_location) is not None
        )

    def wait(self, timeout_s: float = 3600.0) -> Any:
        """Poll every `poll_s` until the output (decoded and returned) or the failure
        (raised as the server's typed error) appears; DeadlineExceededError after
        `timeout_s`, carrying this job so that it can be waited on again."""
        return self._decode(self.wait_reply(timeout_s))

    def wait_reply(self, timeout_s: float) -> Reply:
        start = time.monotonic()
        while True:
            found = self._read(self.output_location, with_type=True)
            if found is not None:
                body, content_type = found
                self.progress(f"result ready after {time.monotonic() - start:.0f} s")
                return Reply(body, content_type)
            if self.failure_location:
                failure = self._read(self.failure_location)
                if failure is not None:
                    raise _failure_error(failure, self.failure_location)
            elapsed = time.monotonic() - start
            if elapsed >= timeout_s:
                raise DeadlineExceededError(
                    f"no result after {timeout_s:.0f} s; it may still arrive at "
                    f"{self.output_location} (job.wait() picks it up)",
                    job=self,
                )
            self.progress(f"waiting for {self.output_location} ({elapsed:.0f} s)")
            time.sleep(min(self.poll_s, max(0.0, timeout_s - elapsed)))

    def _read(self, uri: str, with_type: bool = False) -> Any:
        from botocore.exceptions import ClientError

        bucket, key = parse_s3_uri(uri)
        try:
            obj = self._s3.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404", "NotFound"):
                return None
            raise aws_error(f"reading {uri}", exc) from None
        body = obj["Body"].read()
        return (body, obj.get("ContentType")) if with_type else body


def _failure_error(failure: bytes, where: str) -> Exception:
    """Our container's JSON error becomes its typed error; other text (SageMaker's own,
    e.g. a timeout) an AsyncInferenceError with that text."""
    try:
        doc = json.loads(failure)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        return from_error_body(doc)
    text = failure.decode("utf-8", "replace").strip()
    return AsyncInferenceError(f"async inference failed ({where}): {text[:1000]}")


class AsyncTransport:
    """InvokeEndpointAsync with the body uploaded to `s3://bucket/prefix...`. One sample
    goes as JSON: the body is a readable object in S3 and has no 6 MB cap to save on."""

    single_form = "json"

    def __init__(
        self,
        name: str,
        runtime: Any,
        s3: Any,
        info: EndpointInfo | None,
        *,
        bucket: str | None = None,
        prefix: str = INPUT_PREFIX,
        poll_s: float = 5.0,
        progress: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.name = name
        self.runtime = runtime
        self.s3 = s3
        self.info = info
        self.bucket = bucket or _output_bucket(info)
        if not self.bucket:
            raise InputError(
                f"endpoint {name}: no bucket for the input; pass bucket= (the endpoint "
                "config has no async S3OutputPath to take it from)"
            )
        self.prefix = prefix
        self.poll_s = poll_s
        self.progress = progress
        self.description = f"async endpoint {name}"

    def limits(self) -> Limits:
        # The body travels through S3, so only the container's own limits apply.
        return Limits.from_environment(self.info.environment if self.info else {})

    def submit(
        self,
        request: Request,
        decode: Callable[[Reply], Any],
        *,
        input_s3_uri: str | None = None,
        invocation_timeout_s: int | None = None,
    ) -> AsyncJob:
        from botocore.exceptions import ClientError

        if input_s3_uri is None:
            input_s3_uri = f"s3://{self.bucket}/{self.prefix}{uuid.uuid4().hex}{request.extension}"
        if request.body:
            bucket, key = parse_s3_uri(input_s3_uri)
            try:
                self.s3.put_object(
                    Bucket=bucket, Key=key, Body=request.body, ContentType=request.content_type
                )
            except ClientError as exc:
                raise aws_error(f"uploading the input to {input_s3_uri}", exc) from None
            self.progress(f"uploaded {len(request.body):,} bytes to {input_s3_uri}")
        params: dict[str, Any] = {
            "EndpointName": self.name,
            "InputLocation": input_s3_uri,
            "ContentType": request.content_type,
            "Accept": request.accept,
        }
        if invocation_timeout_s is not None:  # else AWS's default, 900 s
            params["InvocationTimeoutSeconds"] = int(
                min(MAX_INVOCATION_TIMEOUT_S, max(1, invocation_timeout_s))
            )
        if request.custom_attributes:
            params["CustomAttributes"] = request.custom_attributes
        try:
            response = self.runtime.invoke_endpoint_async(**params)
        except ClientError as exc:
            raise aws_error(f"InvokeEndpointAsync {self.name}", exc) from None
        job = AsyncJob(
            self.name,
            response.get("InferenceId", ""),
            input_s3_uri,
            response["OutputLocation"],
            response.get("FailureLocation"),
            self.s3,
            decode,
            self.poll_s,
            self.progress,
        )
        self.progress(f"queued as {job.inference_id or '?'}; result at {job.output_location}")
        return job

    def send(self, request: Request, timeout_s: float) -> Reply:
        return self.submit(request, lambda reply: reply).wait_reply(timeout_s)


def _output_bucket(info: EndpointInfo | None) -> str | None:
    path = ((info and info.async_config) or {}).get("OutputConfig", {}).get("S3OutputPath")
    if not path:
        return None
    try:
        return parse_s3_uri(path)[0]
    except InputError:
        return None
