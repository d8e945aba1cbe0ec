"""`gen3d setup`: the account pieces a deployment needs (bucket, roles, budget)."""

from __future__ import annotations

import argparse
import sys

from gen3d.aws import quotas
from gen3d.aws.account import project_repositories, setup_account
from gen3d.aws.clients import AwsClients
from gen3d.aws.plan import Plan
from gen3d.aws.storage import Lifecycle
from gen3d.cli.aws_support import add_common_arguments, run_reporting_errors, summarise


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "setup",
        help="create the bucket, least-privilege roles and budget for a deployment; "
        "request SageMaker instance quotas",
        description="Create (or bring in line) an S3 bucket with public access blocked, "
        "default encryption, a TLS-only policy and a lifecycle; a SageMaker execution role "
        "and an upload-trigger Lambda role scoped to that bucket (the roles may pull from "
        "the ECR repositories named below and write to the deployment's log groups, but "
        "setup creates neither: `gen3d push` creates a repository, `gen3d deploy` the log "
        "groups); and optionally a monthly budget with an email alert. --dry-run prints "
        "every policy document. --request-quota files a Service Quotas increase request "
        "instead (new accounts have 0 instances of most GPU types).",
    )
    p.add_argument(
        "--name", help="deployment name (tags everything; not needed with --request-quota)"
    )
    p.add_argument(
        "--request-quota",
        action="append",
        metavar="TYPE=N",
        help="request the SageMaker quota for N instances of TYPE (ml.g5.xlarge=1), or "
        "serverless=N for serverless concurrency, through Service Quotas; repeatable. "
        "Only the request is made, no setup",
    )
    p.add_argument(
        "--quota-usage",
        choices=("endpoint", "transform"),
        default="endpoint",
        help="which instance quota --request-quota asks for: endpoint (deploy; default) or "
        "transform (gen3d batch)",
    )
    p.add_argument("--bucket", help="bucket name (default gen3d-NAME-ACCOUNT-REGION)")
    p.add_argument(
        "--ecr-repository",
        action="append",
        metavar="NAME",
        help="ECR repository the execution role may pull from; repeatable (default: "
        f"{', '.join(project_repositories())}, where `make push` pushes each flavor)",
    )
    p.add_argument(
        "--model-data",
        help="s3:// model artifact the execution role may read: a key, or a prefix ending in "
        "/ (an uncompressed model). The role reads no other model, in the bucket or not",
    )
    p.add_argument("--ia-days", type=int, default=30, help="days to STANDARD_IA (default 30)")
    p.add_argument("--glacier-days", type=int, default=90, help="days to GLACIER (default 90)")
    p.add_argument("--expire-days", type=int, default=365, help="days to expiry (default 365)")
    p.add_argument("--budget-usd", type=float, help="monthly budget limit in USD")
    p.add_argument("--budget-email", help="email for budget alerts")
    add_common_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.request_quota:
        return run_reporting_errors(lambda: _request_quotas(args))
    if not args.name:
        print("error: --name is required (unless --request-quota is given)", file=sys.stderr)
        return 2

    def body() -> int:
        plan = Plan(dry_run=args.dry_run)
        plan.out(f"setup {args.name}" + (" [dry run]" if plan.dry_run else ""))
        result = setup_account(
            plan,
            AwsClients(args.region),
            deployment=args.name,
            bucket=args.bucket,
            lifecycle=Lifecycle(args.ia_days, args.glacier_days, args.expire_days),
            ecr_repositories=args.ecr_repository or project_repositories(),
            model_data=args.model_data,
            budget_usd=args.budget_usd,
            budget_email=args.budget_email,
        )
        summarise(plan, f"setup {args.name}")
        if not plan.dry_run:
            plan.out(f"bucket:             s3://{result.bucket}")
            plan.out(f"execution role:     {result.execution_role_arn}  (deploy --role)")
            plan.out(
                f"upload-trigger role: {result.trigger_role_arn}  (deploy --upload-trigger-role)"
            )
        return 0

    return run_reporting_errors(body)


def _request_quotas(args: argparse.Namespace) -> int:
    requests = [quotas.parse_request(value) for value in args.request_quota]
    plan = Plan(dry_run=args.dry_run)
    plan.out("request quotas" + (" [dry run]" if plan.dry_run else ""))
    clients = AwsClients(args.region)
    for target, count in requests:
        quotas.request_increase(plan, clients, target, count, args.quota_usage)
    summarise(plan, "quota requests")
    return 0
