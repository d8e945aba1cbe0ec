"""Polling SageMaker resources with a progress line, a timeout and the failure reason."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from scripts.aws.errors import AwsCommandError

Progress = Callable[[str], None]


def wait_for_endpoint(
    sagemaker: Any, endpoint: str, *, poll_s: float, timeout_s: float, progress: Progress
) -> dict[str, Any]:
    """Until InService; a Failed endpoint raises with its FailureReason."""
    start = time.monotonic()
    while True:
        desc = sagemaker.describe_endpoint(EndpointName=endpoint)
        status = desc["EndpointStatus"]
        elapsed = time.monotonic() - start
        if status == "InService":
            progress(f"  endpoint {endpoint}: InService after {elapsed:.0f} s")
            return desc
        if status in ("Failed", "OutOfService"):
            reason = desc.get("FailureReason") or "no reason given"
            raise AwsCommandError(f"endpoint {endpoint} is {status}: {reason}")
        if elapsed > timeout_s:
            raise AwsCommandError(
                f"endpoint {endpoint} still {status} after {timeout_s:.0f} s "
                "(raise --timeout, or check the CloudWatch logs)"
            )
        progress(f"  endpoint {endpoint}: {status} ({elapsed:.0f} s)")
        time.sleep(poll_s)


def wait_for_transform_job(
    sagemaker: Any, job: str, *, poll_s: float, timeout_s: float, progress: Progress
) -> dict[str, Any]:
    start = time.monotonic()
    while True:
        desc = sagemaker.describe_transform_job(TransformJobName=job)
        status = desc["TransformJobStatus"]
        elapsed = time.monotonic() - start
        if status == "Completed":
            progress(f"  transform job {job}: Completed after {elapsed:.0f} s")
            return desc
        if status in ("Failed", "Stopped"):
            reason = desc.get("FailureReason") or "no reason given"
            raise AwsCommandError(f"transform job {job} {status}: {reason}")
        if elapsed > timeout_s:
            raise AwsCommandError(f"transform job {job} still {status} after {timeout_s:.0f} s")
        progress(f"  transform job {job}: {status} ({elapsed:.0f} s)")
        time.sleep(poll_s)
