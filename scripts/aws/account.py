"""`gen3d setup`: what a deployment needs once per account and region — the private
bucket, least-privilege roles for SageMaker and the upload trigger, and a cost budget."""

from __future__ import annotations

from dataclasses import dataclass

from gen3d.aws import budget, iam, platform, storage
from gen3d.aws.clients import AwsClients
from gen3d.aws.plan import Plan


def project_repositories() -> list[str]:
    """The ECR repositories `make build push` pushes to: gen3d-FLAVOUR for every image
    flavor (the Makefile's IMAGE_NAME, and `gen3d push`'s default repository)."""
    return [f"gen3d-{name}" for name in platform.flavor_names()]


@dataclass
class SetupResult:
    bucket: str
    execution_role_arn: str
    trigger_role_arn: str


def setup_account(
    plan: Plan,
    clients: AwsClients,
    *,
    deployment: str,
    bucket: str | None,
    lifecycle: storage.Lifecycle,
    ecr_repositories: list[str],
    model_data: str | None = None,
    budget_usd: float | None = None,
    budget_email: str | None = None,
) -> SetupResult:
    region = clients.region
    account = plan.read("account id (STS)", clients.account_id, str, placeholder="<account-id>")
    bucket = bucket or storage.default_bucket_name(deployment, account, region)
    storage.ensure_bucket(plan, clients.s3, bucket, deployment, region, lifecycle)
    model_arns, model_buckets = [], []
    if model_data:
        model_bucket, key = storage.parse_s3_uri(model_data)
        if key.endswith("/"):  # an uncompressed prefix (gen3d package --uncompressed)
            model_arns.append(f"arn:aws:s3:::{model_bucket}/{key}*")
            model_buckets.append(model_bucket)
        else:
            model_arns.append(f"arn:aws:s3:::{model_bucket}/{key}")
    execution_policy = iam.execution_role_policy(
        deployment=deployment,
        bucket=bucket,
        account=account,
        region=region,
        ecr_repositories=ecr_repositories,
        model_data_arns=model_arns,
        model_buckets=model_buckets,
    )
    role_arn = iam.ensure_role(
        plan,
        clients.iam,
        iam.execution_role_name(deployment),
        iam.execution_trust_policy(account, region),
        execution_policy,
        deployment,
    )
    trigger_policy = iam.trigger_role_policy(deployment=deployment, account=account, region=region)
    trigger_arn = iam.ensure_role(
        plan,
        clients.iam,
        iam.trigger_role_name(deployment),
        iam.trigger_trust_policy(deployment, account, region),
        trigger_policy,
        deployment,
    )
    if budget_usd is not None and budget_email:
        request = budget.budget_request(deployment, account, budget_usd, budget_email)
        budget.ensure_budget(plan, clients.budgets, request)
    elif budget_usd is not None or budget_email:
        plan.note("a budget needs both --budget-usd and --budget-email; none created")
    return SetupResult(bucket=bucket, execution_role_arn=role_arn, trigger_role_arn=trigger_arn)
