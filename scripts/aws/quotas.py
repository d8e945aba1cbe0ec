"""SageMaker instance quotas: read before `gen3d deploy` / `gen3d batch` create anything,
requested with `gen3d setup --request-quota TYPE=N`.

New accounts have 0 instances of most GPU types "for endpoint usage" and "for transform
job usage"; CreateEndpoint then fails with ResourceLimitExceeded after the model and the
endpoint config exist. The quotas live in Service Quotas under service code `sagemaker`,
one per instance type and usage, named "ml.g5.xlarge for endpoint usage" / "ml.g5.xlarge
for transform job usage"; serverless endpoints share "Maximum total concurrency that can
be allocated across all serverless endpoints" (docs.aws.amazon.com/sagemaker/latest/dg/
regions-quotas.html, "Amazon SageMaker AI endpoints and quotas" in the AWS General
Reference, docs.aws.amazon.com/general/latest/gr/sagemaker.html). Codes (L-...) differ by
quota and are looked up by name, never guessed.

ListServiceQuotas returns applied values; a quota never changed in the account may only be
in ListAWSDefaultServiceQuotas (Service Quotas API reference), which is read next. Usage is
counted from SageMaker itself: instances of the type behind every other endpoint
(DescribeEndpoint's CurrentInstanceCount, or DesiredInstanceCount while it scales up),
instances of running transform jobs, and the MaxConcurrency of every other serverless
endpoint.

When the quota cannot be read (no servicequotas:ListServiceQuotas permission, say), the
check says so and the deploy goes on: SageMaker's own ResourceLimitExceeded is then
translated into the same guidance (limit_exceeded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from gen3d.aws.errors import AwsCommandError
from gen3d.aws.plan import ApiCall, Plan

SERVICE_CODE = "sagemaker"
SERVERLESS_QUOTA = "Maximum total concurrency that can be allocated across all serverless endpoints"
USAGES = {"endpoint": "endpoint usage", "transform": "transform job usage"}
SERVERLESS = "serverless"  # --request-quota serverless=N


class QuotaError(AwsCommandError):
    """A request that the account's quota cannot hold: nothing was created for it."""


@dataclass(frozen=True)
class Quota:
    name: str
    code: str
    value: float
    applied: bool  # False: only the AWS default was found


@dataclass(frozen=True)
class Need:
    """What a deployment or job asks of one quota."""

    name: str  # the quota's name
    target: str  # TYPE or "serverless", as `--request-quota` takes it
    usage: str  # "endpoint" | "transform" | "serverless"
    count: int  # instances (or serverless concurrency) it needs at once
    exclude_endpoint: str | None = None  # its own endpoint's current use is not "other"


def quota_name(target: str, usage: str) -> str:
    if target == SERVERLESS:
        return SERVERLESS_QUOTA
    return f"{target} for {USAGES[usage]}"


def request_command(need: Need, total: int, region: str) -> str:
    usage = " --quota-usage transform" if need.usage == "transform" else ""
    return f"gen3d setup --request-quota {need.target}={total}{usage} --region {region}"


def _paged(client: Any, op: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    return [i for page in client.get_paginator(op).paginate(**kwargs) for i in page.get(key, [])]


def find_quota(service_quotas: Any, name: str) -> Quota | None:
    """The applied quota called `name`, else its AWS default; None when neither lists it."""
    for op, applied in (("list_service_quotas", True), ("list_aws_default_service_quotas", False)):
        for quota in _paged(service_quotas, op, "Quotas", ServiceCode=SERVICE_CODE):
            if quota.get("QuotaName") == name:
                return Quota(name, quota["QuotaCode"], float(quota["Value"]), applied)
    return None


def _variant_types(sagemaker: Any, config: str) -> dict[str, dict[str, Any]]:
    variants = sagemaker.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"]
    return {v["VariantName"]: v for v in variants}


def in_use(sagemaker: Any, need: Need) -> int:
    """What other endpoints (or running transform jobs) hold of `need`'s quota now."""
    if need.usage == "transform":
        used = 0
        for job in _paged(
            sagemaker, "list_transform_jobs", "TransformJobSummaries", StatusEquals="InProgress"
        ):
            resources = sagemaker.describe_transform_job(TransformJobName=job["TransformJobName"])[
                "TransformResources"
            ]
            if resources["InstanceType"] == need.target:
                used += int(resources["InstanceCount"])
        return used
    used = 0
    for summary in _paged(sagemaker, "list_endpoints", "Endpoints"):
        if summary["EndpointName"] == need.exclude_endpoint:
            continue
        endpoint = sagemaker.describe_endpoint(EndpointName=summary["EndpointName"])
        configured = _variant_types(sagemaker, endpoint["EndpointConfigName"])
        for live in endpoint.get("ProductionVariants", []):
            variant = configured.get(live["VariantName"], {})
            if need.usage == SERVERLESS:
                used += int(variant.get("ServerlessConfig", {}).get("MaxConcurrency", 0))
            elif variant.get("InstanceType") == need.target:
                # an endpoint still scaling holds what it asked for (the desired count)
                counts = (live.get("CurrentInstanceCount", 0), live.get("DesiredInstanceCount", 0))
                used += int(max(counts))
    return used


@dataclass(frozen=True)
class Check:
    need: Need
    quota: Quota | None
    used: int
    problem: str | None  # why it was not checked (it then goes on)


def check(service_quotas: Any, sagemaker: Any, need: Need) -> Check:
    try:
        quota = find_quota(service_quotas, need.name)
        used = in_use(sagemaker, need)
    except (ClientError, BotoCoreError) as exc:
        reason = (
            exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else ""
        ) or str(exc)
        return Check(need, None, 0, f"could not read it ({reason})")
    if quota is None:
        return Check(need, None, used, "Service Quotas lists no such quota")
    return Check(need, quota, used, None)


def refusal(result: Check, region: str, what: str) -> str | None:
    """The message that stops a deploy whose need does not fit, or None when it fits."""
    quota, need = result.quota, result.need
    if quota is None or result.used + need.count <= quota.value:
        return None
    total = result.used + need.count
    unit = "concurrency" if need.usage == SERVERLESS else "instance(s)"
    return (
        f"{what} needs {need.count} {unit} of quota '{quota.name}' ({quota.code}), which is "
        f"{quota.value:g} in {region}"
        + (f" with {result.used} in use elsewhere" if result.used else "")
        + "; nothing was created. Request an increase with `"
        + request_command(need, total, region)
        + "` (Service Quotas; approval can take a day), then run the same command again"
    )


def preflight(
    plan: Plan,
    clients: Any,
    needs: list[Need],
    what: str,
    *,
    soft: list[Need] | None = None,
) -> None:
    """Read each of `needs`' quota and usage; refuse (QuotaError) when one cannot fit.
    `soft` needs (an autoscaling maximum) only warn. A dry run shows the reads it would
    make."""
    region = clients.region
    read: dict[str, Check] = {}  # a quota read once serves every need of it
    shown: set[str] = set()
    for need, hard in [(n, True) for n in needs] + [(n, False) for n in soft or []]:
        if need.name in read:
            result: Check | None = Check(need, read[need.name].quota, read[need.name].used, None)
        elif plan.dry_run and need.name in shown:
            continue  # the same read, shown once
        else:
            shown.add(need.name)
            usage = (
                ApiCall("sagemaker", "ListTransformJobs", {"StatusEquals": "InProgress"})
                if need.usage == "transform"
                else ApiCall("sagemaker", "ListEndpoints", {})
            )
            calls = [
                ApiCall("service-quotas", "ListServiceQuotas", {"ServiceCode": SERVICE_CODE}),
                ApiCall(
                    "service-quotas", "ListAWSDefaultServiceQuotas", {"ServiceCode": SERVICE_CODE}
                ),
                usage,  # then Describe* of each one found, for its instance type and count
            ]
            result = plan.read(
                f"quota '{need.name}' and its use (needs {need.count})",
                lambda need=need: check(clients.service_quotas, clients.sagemaker, need),
                _describe,
                calls=calls,
            )
            if result is not None:
                read[need.name] = result
        if result is None:  # dry run
            continue
        message = refusal(result, region, what)
        if message and hard:
            raise QuotaError(message)
        if message:
            plan.note(
                message.replace("; nothing was created", "; autoscaling will stop there").replace(
                    f"{what} needs", f"{what}'s autoscaling maximum needs"
                )
            )
        elif result.problem:
            command = request_command(need, need.count, region)
            plan.note(
                f"quota '{need.name}' not checked: {result.problem}; if SageMaker answers "
                f"ResourceLimitExceeded, request one with `{command}`"
            )


def _describe(result: Check) -> str:
    if result.quota is None:
        return f"not checked ({result.problem})"
    source = "" if result.quota.applied else ", AWS default"
    return f"{result.quota.value:g} ({result.quota.code}{source}), {result.used} in use elsewhere"


def limit_exceeded(exc: ClientError, need: Need, region: str, kept: str) -> AwsCommandError:
    """SageMaker's ResourceLimitExceeded, with the request command; other errors as they
    are. `kept` says what stays behind and how a re-run or teardown handles it."""
    error = exc.response.get("Error", {})
    if error.get("Code") != "ResourceLimitExceeded":
        return AwsCommandError(
            f"AWS {exc.operation_name}: {error.get('Code')}: {error.get('Message')}"
        )
    return QuotaError(
        f"SageMaker refused {exc.operation_name} for lack of quota: {error.get('Message')}. "
        f"Request quota '{need.name}' with `{request_command(need, need.count, region)}` "
        f"(more if other endpoints use it). {kept}"
    )


def parse_request(value: str) -> tuple[str, int]:
    """'ml.g5.xlarge=2' -> ('ml.g5.xlarge', 2); 'serverless=50' for serverless concurrency."""
    target, sep, count = value.partition("=")
    if not sep or not (target.startswith("ml.") or target == SERVERLESS):
        raise AwsCommandError(
            f"--request-quota {value!r}: expected TYPE=N (ml.g5.xlarge=1) or serverless=N"
        )
    try:
        number = int(count)
    except ValueError:
        raise AwsCommandError(f"--request-quota {value!r}: N must be a whole number") from None
    if number < 1:
        raise AwsCommandError(f"--request-quota {value!r}: N must be at least 1")
    return target, number


def request_increase(plan: Plan, clients: Any, target: str, count: int, usage: str) -> None:
    """File a Service Quotas increase request for `target`'s `usage` quota to `count`."""
    kind = SERVERLESS if target == SERVERLESS else usage
    name = quota_name(target, kind)
    quota: Quota | None = plan.read(
        f"quota '{name}'",
        lambda: find_quota(clients.service_quotas, name),
        lambda q: "not listed" if q is None else f"{q.value:g} ({q.code})",
        calls=[ApiCall("service-quotas", "ListServiceQuotas", {"ServiceCode": SERVICE_CODE})],
    )
    if not plan.dry_run and quota is None:
        raise AwsCommandError(
            f"Service Quotas lists no quota '{name}' in {clients.region}: check the instance "
            "type, or whether SageMaker offers it in this region"
        )
    if quota is not None and quota.value >= count:
        plan.note(f"quota '{name}' is {quota.value:g} already: nothing to request")
        return
    body = {
        "ServiceCode": SERVICE_CODE,
        "QuotaCode": quota.code if quota else f"<code of quota {name}>",
        "DesiredValue": float(count),
    }

    def apply() -> tuple[str, str]:
        answer = clients.service_quotas.request_service_quota_increase(**body)
        requested = answer["RequestedQuota"]
        return "created", f"{requested.get('Id')} ({requested.get('Status')})"

    request_id = plan.step(
        f"Service Quotas request: '{name}' to {count}",
        apply,
        calls=[ApiCall("service-quotas", "RequestServiceQuotaIncrease", body)],
    )
    if not plan.dry_run:
        plan.out(
            f"  requested; track it with `aws service-quotas list-requested-service-quota-"
            f"change-history --service-code {SERVICE_CODE}` (request {request_id})"
        )
