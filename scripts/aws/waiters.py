"""Polling SageMaker resources with a progress line, a timeout and the failure reason."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

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
    sagemaker: Any,
    endpoint: str,
    *,
    poll_s: float,
    timeout_s: float,
    progress: Progress,
    config: str | None = None,
) -> dict[str, Any]:
    """Until InService; a Failed endpoint raises with its FailureReason.

    With `config` (after UpdateEndpoint) only InService *on that endpoint config* counts:
    a failed update rolls back and leaves the endpoint InService on the old config, which
    is not success (UpdateEndpoint docs: the status is Updating from the request on)."""
    desc = _wait(
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
    if config is not None and desc["EndpointConfigName"] != config:
        reason = desc.get("FailureReason") or "no reason given; see the endpoint's events"
        raise AwsCommandError(
            f"endpoint {endpoint} is InService on {desc['EndpointConfigName']}, not on "
            f"{config}: the update failed and was rolled back ({reason})"
        )
    return desc


def wait_for_inference_component(
    sagemaker: Any, component: str, *, poll_s: float, timeout_s: float, progress: Progress
) -> dict[str, Any]:
    """Until InService; a Failed component raises with its FailureReason."""
    return _wait(
        lambda: sagemaker.describe_inference_component(InferenceComponentName=component),
        "InferenceComponentStatus",
        f"inference component {component}",
        "InService",
        ("Failed",),
        poll_s=poll_s,
        timeout_s=timeout_s,
        progress=progress,
    )


def wait_until_gone(
    describe: Callable[[], object], what: str, *, poll_s: float, timeout_s: float
) -> None:
    """Until `describe` raises (the resource no longer exists)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        try:
            describe()
        except ClientError:
            return
        time.sleep(poll_s)
    raise AwsCommandError(f"{what} still deleting after {timeout_s:.0f} s")


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


def wait_for_transform_job_to_stop(
    sagemaker: Any, job: str, *, poll_s: float, timeout_s: float, progress: Progress
) -> str:
    """Until a job is no longer InProgress or Stopping; returns the status it ended in."""
    start = time.monotonic()
    while True:
        status = sagemaker.describe_transform_job(TransformJobName=job)["TransformJobStatus"]
        elapsed = time.monotonic() - start
        if status not in ("InProgress", "Stopping"):
            progress(f"  transform job {job}: {status} after {elapsed:.0f} s")
            return status
        if elapsed > timeout_s:
            raise AwsCommandError(
                f"transform job {job} still {status} after {timeout_s:.0f} s; run teardown "
                "again once it has stopped"
            )
        progress(f"  transform job {job}: {status} ({elapsed:.0f} s)")
        time.sleep(poll_s)
