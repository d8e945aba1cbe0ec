"""`gen3d teardown`: delete everything tagged gen3d:deployment=NAME, in dependency order.

Found by tag, service by service (names narrow the search first; the tag decides), so
nothing of another deployment is touched. A second run finds nothing and changes nothing.
Transform-job records cannot be deleted in SageMaker: running ones are stopped, waited for
until they have stopped (a stopping job still reads its bucket and uses the role), and
their tag removed. Budgets are found by name (gen3d-NAME), as not every budgets API lists
tags. The upload Lambda's log group (/aws/lambda/gen3d-NAME-upload) goes with the others.

`--images` (opt-in) also deletes the ECR repositories `gen3d push` / `make push` push to
(gen3d-cpu, gen3d-gpu, gen3d-sam3d by default), with every image in them: they are the
account's, not one deployment's, and ECR bills their storage by the GB-month.

A dry run finds the resources with read-only calls and lists each one it would delete.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from gen3d.aws import autoscaling, dashboard
from gen3d.aws.budget import budget_name
from gen3d.aws.clients import TAG_KEY, AwsClients, has_tag
from gen3d.aws.iam import delete_role
from gen3d.aws.logs import LOG_GROUP_ROOT, lambda_log_group
from gen3d.aws.plan import DELETED, UPDATED, Plan
from gen3d.aws.storage import empty_and_delete_bucket
from gen3d.aws.upload_trigger import function_name, remove_bucket_notification
from gen3d.aws.waiters import wait_for_transform_job_to_stop, wait_until_gone

ORDER = (
    "CloudWatch alarms",
    "CloudWatch dashboard",
    "autoscaling policies and scalable targets",
    "upload trigger (bucket notification, Lambda)",
    "inference components (and wait until they are gone)",
    "endpoints (and wait until they are gone)",
    "endpoint configs",
    "models",
    "transform jobs (stop running ones and wait until stopped, untag)",
    "SNS topics",
    "log groups (endpoint, inference component, upload Lambda)",
    "S3 buckets",
    "IAM roles",
    "budget",
    "ECR repositories and their images (only with --images)",
)

Action = tuple[str, Callable[[], object]]


def teardown(
    plan: Plan,
    clients: AwsClients,
    deployment: str,
    *,
    keep_bucket: bool = False,
    images: list[str] | None = None,
    poll_s: float = 10.0,
    timeout_s: float = 1800.0,
) -> list[tuple[str, str]]:
    """Delete what is tagged for `deployment`; `images`: ECR repositories to delete too
    (None: none). A dry run lists what it found and deletes nothing."""
    if plan.dry_run:
        plan.out(f"  finding resources tagged {TAG_KEY}={deployment} (read-only); order:")
        for i, what in enumerate(ORDER, 1):
            skip = " (skipped: --keep-bucket)" if keep_bucket and what == "S3 buckets" else ""
            plan.out(f"    {i:2}. {what}{skip}")
    found = _Finder(clients, deployment)
    endpoints = found.endpoints()
    buckets = found.buckets()
    groups: list[list[Action]] = [
        found.alarms(),
        dashboard.teardown_actions(clients.cloudwatch, deployment),  # found by name + marker
        found.scalable_targets(endpoints),
        found.upload_trigger(buckets),
        found.inference_components(endpoints, poll_s, timeout_s),
        [
            (f"endpoint {e}", _delete_endpoint(clients.sagemaker, e, poll_s, timeout_s))
            for e in endpoints
        ],
        found.endpoint_configs(),
        found.models(),
        found.transform_jobs(poll_s, timeout_s, plan.out),
        found.topics(),
        found.log_groups(),
        []
        if keep_bucket
        else [
            (f"S3 bucket {b} and its objects", lambda b=b: empty_and_delete_bucket(clients.s3, b))
            for b in buckets
        ],
        found.roles(),
        found.budget(),
        found.repositories(images or []),
    ]
    actions = [action for group in groups for action in group]
    if plan.dry_run:
        for summary, _ in actions:
            plan.out(
                f"  would {'' if summary.startswith(('untag', 'stop')) else 'delete '}{summary}"
            )
        if not actions:
            plan.out(f"  nothing tagged {TAG_KEY}={deployment} found")
        plan.steps.extend(summary for summary, _ in actions)
        return []
    for summary, delete in actions:
        outcome = UPDATED if summary.startswith(("untag", "stop")) else DELETED
        plan.step(summary, lambda d=delete, o=outcome: (d(), (o, None))[1])
    if not plan.changes:
        plan.out(f"  nothing tagged {TAG_KEY}={deployment} remains")
    if keep_bucket and buckets:
        plan.note(f"kept (tagged) bucket(s): {', '.join(buckets)}")
    return plan.changes


def _delete_endpoint(
    sagemaker: Any, endpoint: str, poll_s: float, timeout_s: float
) -> Callable[[], None]:
    def delete() -> None:
        sagemaker.delete_endpoint(EndpointName=endpoint)
        # Its config and model may only go once the endpoint is gone.
        wait_until_gone(
            lambda: sagemaker.describe_endpoint(EndpointName=endpoint),
            f"endpoint {endpoint}",
            poll_s=poll_s,
            timeout_s=timeout_s,
        )

    return delete


def _delete_inference_component(
    sagemaker: Any, component: str, poll_s: float, timeout_s: float
) -> Callable[[], None]:
    def delete() -> None:
        sagemaker.delete_inference_component(InferenceComponentName=component)
        # The endpoint cannot be deleted while a component on it still exists.
        wait_until_gone(
            lambda: sagemaker.describe_inference_component(InferenceComponentName=component),
            f"inference component {component}",
            poll_s=poll_s,
            timeout_s=timeout_s,
        )

    return delete


def _missing(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code", "")
    return code in (
        "ResourceNotFoundException",
        "NoSuchEntity",
        "NotFoundException",
        "NoSuchBucket",
        "NoSuchTagSet",
        "ValidationException",
        "NotFound",
        "404",
    )


class _Finder:
    def __init__(self, clients: AwsClients, deployment: str) -> None:
        self.c = clients
        self.name = deployment

    def _sm_tagged(self, arn: str) -> bool:
        return has_tag(self.c.sagemaker.list_tags(ResourceArn=arn)["Tags"], self.name)

    def _paged(self, client: Any, op: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
        return [
            item
            for page in client.get_paginator(op).paginate(**kwargs)
            for item in page.get(key, [])
        ]

    def endpoints(self) -> list[str]:
        found = self._paged(self.c.sagemaker, "list_endpoints", "Endpoints", NameContains=self.name)
        return [e["EndpointName"] for e in found if self._sm_tagged(e["EndpointArn"])]

    def alarms(self) -> list[Action]:
        cw = self.c.cloudwatch
        alarms = self._paged(cw, "describe_alarms", "MetricAlarms", AlarmNamePrefix=self.name)
        names = [
            a["AlarmName"]
            for a in alarms
            if has_tag(cw.list_tags_for_resource(ResourceARN=a["AlarmArn"])["Tags"], self.name)
        ]
        return [(f"alarm {n}", lambda n=n: cw.delete_alarms(AlarmNames=[n])) for n in names]

    def scalable_targets(self, endpoints: list[str]) -> list[Action]:
        aas = self.c.application_autoscaling
        prefixes = [f"endpoint/{e}/" for e in endpoints] + [f"inference-component/{self.name}-"]
        targets = [
            t
            for t in self._paged(
                aas, "describe_scalable_targets", "ScalableTargets", ServiceNamespace="sagemaker"
            )
            if t["ResourceId"].startswith(tuple(prefixes))
        ]
        actions: list[Action] = []
        for t in targets:
            rid, dim = t["ResourceId"], t["ScalableDimension"]
            for p in self._paged(
                aas,
                "describe_scaling_policies",
                "ScalingPolicies",
                ServiceNamespace="sagemaker",
                ResourceId=rid,
            ):
                actions.append(
                    (
                        f"scaling policy {p['PolicyName']}",
                        lambda p=p: aas.delete_scaling_policy(
                            PolicyName=p["PolicyName"],
                            ServiceNamespace="sagemaker",
                            ResourceId=p["ResourceId"],
                            ScalableDimension=p["ScalableDimension"],
                        ),
                    )
                )
            actions.append(
                (
                    f"scalable target {rid}",
                    lambda rid=rid, dim=dim: aas.deregister_scalable_target(
                        ServiceNamespace=autoscaling.NAMESPACE,
                        ResourceId=rid,
                        ScalableDimension=dim,
                    ),
                )
            )
        return actions

    def upload_trigger(self, buckets: list[str]) -> list[Action]:
        lam = self.c.client("lambda")
        actions: list[Action] = [
            (
                f"upload notification on {b}",
                lambda b=b: (remove_bucket_notification(self.c.s3, b, self.name), None)[1],
            )
            for b in buckets
            if self._has_trigger_notification(b)
        ]
        name = function_name(self.name)
        try:
            arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
            if has_tag(lam.list_tags(Resource=arn).get("Tags", {}), self.name):
                actions.append((f"Lambda {name}", lambda: lam.delete_function(FunctionName=name)))
        except ClientError as exc:
            if not _missing(exc):
                raise
        return actions

    def _has_trigger_notification(self, bucket: str) -> bool:
        config = self.c.s3.get_bucket_notification_configuration(Bucket=bucket)
        return any(
            c.get("Id") == function_name(self.name)
            for c in config.get("LambdaFunctionConfigurations", [])
        )

    def inference_components(
        self, endpoints: list[str], poll_s: float, timeout_s: float
    ) -> list[Action]:
        sm = self.c.sagemaker
        actions: list[Action] = []
        for e in endpoints:
            config = sm.describe_endpoint_config(
                EndpointConfigName=sm.describe_endpoint(EndpointName=e)["EndpointConfigName"]
            )
            if all(v.get("ModelName") for v in config["ProductionVariants"]):
                continue  # a model-per-variant endpoint has no inference components
            for ic in self._paged(
                sm, "list_inference_components", "InferenceComponents", EndpointNameEquals=e
            ):
                n = ic["InferenceComponentName"]
                actions.append(
                    (
                        f"inference component {n}",
                        _delete_inference_component(sm, n, poll_s, timeout_s),
                    )
                )
        return actions

    def endpoint_configs(self) -> list[Action]:
        sm = self.c.sagemaker
        found = self._paged(sm, "list_endpoint_configs", "EndpointConfigs", NameContains=self.name)
        return [
            (
                f"endpoint config {c['EndpointConfigName']}",
                lambda n=c["EndpointConfigName"]: sm.delete_endpoint_config(EndpointConfigName=n),
            )
            for c in found
            if self._sm_tagged(c["EndpointConfigArn"])
        ]

    def models(self) -> list[Action]:
        sm = self.c.sagemaker
        found = self._paged(sm, "list_models", "Models", NameContains=self.name)
        return [
            (f"model {m['ModelName']}", lambda n=m["ModelName"]: sm.delete_model(ModelName=n))
            for m in found
            if self._sm_tagged(m["ModelArn"])
        ]

    def transform_jobs(self, poll_s: float, timeout_s: float, progress: Any) -> list[Action]:
        sm = self.c.sagemaker
        found = self._paged(
            sm, "list_transform_jobs", "TransformJobSummaries", NameContains=self.name
        )
        actions: list[Action] = []
        for job in found:
            if not self._sm_tagged(job["TransformJobArn"]):
                continue
            name, arn = job["TransformJobName"], job["TransformJobArn"]
            status = job["TransformJobStatus"]
            if status in ("InProgress", "Stopping"):

                def stop(n: str = name, running: bool = status == "InProgress") -> None:
                    if running:
                        sm.stop_transform_job(TransformJobName=n)
                    # Its bucket and role go later in this teardown: a stopping job
                    # still reads the one and runs as the other.
                    wait_for_transform_job_to_stop(
                        sm, n, poll_s=poll_s, timeout_s=timeout_s, progress=progress
                    )

                actions.append((f"stop transform job {name} and wait until stopped", stop))
            actions.append(
                (
                    f"untag transform job {name} (records cannot be deleted)",
                    lambda a=arn: sm.delete_tags(ResourceArn=a, TagKeys=[TAG_KEY]),
                )
            )
        return actions

    def topics(self) -> list[Action]:
        sns = self.c.sns
        actions: list[Action] = []
        for t in self._paged(sns, "list_topics", "Topics"):
            arn = t["TopicArn"]
            if not arn.rsplit(":", 1)[-1].startswith(f"gen3d-{self.name}-"):
                continue
            if not has_tag(sns.list_tags_for_resource(ResourceArn=arn)["Tags"], self.name):
                continue
            for s in self._paged(sns, "list_subscriptions_by_topic", "Subscriptions", TopicArn=arn):
                if s["SubscriptionArn"].startswith("arn:"):  # not "PendingConfirmation"
                    actions.append(
                        (
                            f"subscription {s['Endpoint']} on {arn.rsplit(':', 1)[-1]}",
                            lambda s=s: sns.unsubscribe(SubscriptionArn=s["SubscriptionArn"]),
                        )
                    )
            actions.append(
                (
                    f"SNS topic {arn.rsplit(':', 1)[-1]}",
                    lambda arn=arn: sns.delete_topic(TopicArn=arn),
                )
            )
        return actions

    def log_groups(self) -> list[Action]:
        logs = self.c.logs
        found = [
            group
            for kind in ("Endpoints", "InferenceComponents")
            for group in self._paged(
                logs,
                "describe_log_groups",
                "logGroups",
                logGroupNamePrefix=f"{LOG_GROUP_ROOT}/{kind}/{self.name}",
            )
        ]
        names = [
            g["logGroupName"]
            for g in found
            if has_tag(logs.list_tags_log_group(logGroupName=g["logGroupName"])["tags"], self.name)
        ]
        # The upload Lambda's group: deploy makes it tagged, but Lambda itself made it,
        # untagged, for deployments older than that; its name is this deployment's alone.
        trigger_group = lambda_log_group(function_name(self.name))
        names += [
            g["logGroupName"]
            for g in self._paged(
                logs, "describe_log_groups", "logGroups", logGroupNamePrefix=trigger_group
            )
            if g["logGroupName"] == trigger_group
        ]
        return [
            (f"log group {n}", lambda n=n: logs.delete_log_group(logGroupName=n)) for n in names
        ]

    def buckets(self) -> list[str]:
        s3 = self.c.s3
        tagged = []
        for b in s3.list_buckets().get("Buckets", []):
            try:
                tags = s3.get_bucket_tagging(Bucket=b["Name"])["TagSet"]
            except ClientError as exc:
                if _missing(exc):
                    continue
                raise
            if has_tag(tags, self.name):
                tagged.append(b["Name"])
        return tagged

    def roles(self) -> list[Action]:
        iam = self.c.iam
        roles = [
            r["RoleName"]
            for r in self._paged(iam, "list_roles", "Roles")
            if r["RoleName"].startswith(f"gen3d-{self.name}-")
        ]
        tagged = [r for r in roles if has_tag(iam.list_role_tags(RoleName=r)["Tags"], self.name)]
        return [(f"IAM role {r}", lambda r=r: delete_role(iam, r)) for r in tagged]

    def repositories(self, names: list[str]) -> list[Action]:
        """ECR repositories of `names` that exist, each deleted with its images."""
        if not names:
            return []
        ecr = self.c.ecr
        actions: list[Action] = []
        for name in names:
            try:
                ecr.describe_repositories(repositoryNames=[name])
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "RepositoryNotFoundException":
                    continue
                raise
            images = self._paged(ecr, "list_images", "imageIds", repositoryName=name)
            actions.append(
                (
                    f"ECR repository {name} and its {len(images)} image reference(s)",
                    lambda n=name: ecr.delete_repository(repositoryName=n, force=True),
                )
            )
        return actions

    def budget(self) -> list[Action]:
        budgets = self.c.budgets
        account = self.c.account_id()
        name = budget_name(self.name)
        try:
            budgets.describe_budget(AccountId=account, BudgetName=name)
        except ClientError as exc:
            if _missing(exc):
                return []
            raise
        return [
            (f"budget {name}", lambda: budgets.delete_budget(AccountId=account, BudgetName=name))
        ]
