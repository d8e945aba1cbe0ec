"""`gen3d teardown`: remove everything a deployment made, found by its tag."""

from __future__ import annotations

import argparse

from gen3d.aws.account import project_repositories
from gen3d.aws.clients import TAG_KEY, AwsClients
from gen3d.aws.plan import Plan
from gen3d.aws.teardown import teardown
from gen3d.cli.aws_support import add_common_arguments, run_reporting_errors, summarise


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "teardown",
        help="delete every resource tagged gen3d:deployment=NAME",
        description=f"Find resources tagged {TAG_KEY}=NAME (alarms, dashboard, autoscaling, upload "
        "trigger, inference components, endpoint, configs, models, transform jobs, topics, "
        "log groups including the upload Lambda's, bucket, roles, budget) and delete them in "
        "dependency order; a running transform job is stopped and waited for. Safe to "
        "re-run: a second run finds nothing. ECR repositories and images are kept unless "
        "--images is given (they are the account's, shared by deployments, and ECR bills "
        "their storage).",
    )
    p.add_argument("--name", required=True, help="deployment name")
    p.add_argument(
        "--keep-bucket",
        action="store_true",
        help="keep the deployment's S3 bucket and its inputs/results",
    )
    p.add_argument(
        "--images",
        action="store_true",
        help="also delete the ECR repositories `gen3d push`/`make push` push to, with every "
        f"image in them (default {', '.join(project_repositories())}; see --ecr-repository)",
    )
    p.add_argument(
        "--ecr-repository",
        action="append",
        metavar="NAME",
        help="with --images: the repository to delete instead of the defaults; repeatable",
    )
    p.add_argument("--poll", type=float, default=10.0, help="seconds between status polls")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait at most")
    add_common_arguments(
        p,
        dry_run_help="list every resource it would delete (found with read-only calls) "
        "and delete nothing",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    def body() -> int:
        plan = Plan(dry_run=args.dry_run)
        plan.out(f"teardown {args.name}" + (" [dry run]" if plan.dry_run else ""))
        teardown(
            plan,
            AwsClients(args.region),
            args.name,
            keep_bucket=args.keep_bucket,
            images=(args.ecr_repository or project_repositories()) if args.images else None,
            poll_s=args.poll,
            timeout_s=args.timeout,
        )
        if plan.dry_run:
            plan.out(
                f"dry run: {len(plan.steps)} resource(s) found for teardown {args.name} with "
                "read-only calls; nothing was deleted"
            )
        else:
            summarise(plan, f"teardown {args.name}")
        return 0

    return run_reporting_errors(body)
