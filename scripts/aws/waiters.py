"""Polling SageMaker resources with a progress line, a timeout and the failure reason."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from gen3d.aws.errors import AwsCommandError

Progress = Callable[[str], None]


def _wait(
    describe: Callable[[], dict[str, Any]],
    status_key: str,
    what: str,
    done: str,
    failed: tuple[str, ...],
    *,
    poll_s: float,
    timeout_s: float,
    progress: Progress,
    timeout_hint: str = "",
) -> dict[str, Any]:
    start = time.monotonic()
    while True:
        desc = describe()
        status = desc[status_key]
        elapsed = time.monotonic() - start
        if status == done:
            progress(f"  {what}: {done} after {elapsed:.0f} s")
            return desc
        if status in failed:
            reason = desc.get("FailureReason") or "no reason given"
            raise AwsCommandError(f"{what} is {status}: {reason}")
        if elapsed > timeout_s:
            raise AwsCommandError(f"{what} still {status} after {timeout_s:.0f} s{timeout_hint}")
        progress(f"  {what}: {status} ({elapsed:.0f} s)")
        time.sleep(poll_s)


def wait_for_endpoint(
    sagemaker: Any, endpoint: str, *, poll_s: float, timeout_s: float, progress: Progress
) -> dict[str, Any]:
    """Until InService; a Failed endpoint raises with its FailureReason."""
    return _wait(
        lambda: sagemaker.describe_endpoint(EndpointName=endpoint),
        "EndpointStatus",
        f"endpoint {endpoint}",
        "InService",
        ("Failed", "OutOfService"),
        poll_s=poll_s,
        timeout_s=timeout_s,
        progress=progress,
        timeout_hint=" (raise --timeout, or check the CloudWatch logs)",
    )


def wait_for_transform_job(
    sagemaker: Any, job: str, *, poll_s: float, timeout_s: float, progress: Progress
) -> dict[str, Any]:
    """Until Completed; a Failed or Stopped job raises with its FailureReason."""
    return _wait(
        lambda: sagemaker.describe_transform_job(TransformJobName=job),
        "TransformJobStatus",
        f"transform job {job}",
        "Completed",
        ("Failed", "Stopped"),
        poll_s=poll_s,
        timeout_s=timeout_s,
        progress=progress,
    )
