"""`gen3d teardown`: remove everything a deployment made, found by its tag."""

from __future__ import annotations

import argparse

from gen3d.aws.clients import TAG_KEY, AwsClients
from gen3d.aws.plan import Plan
from gen3d.aws.teardown import teardown
from gen3d.cli.aws_support import add_common_arguments, run_reporting_errors, summarise


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "teardown",
        help="delete every resource tagged gen3d:deployment=NAME",
        description=f"Find resources tagged {TAG_KEY}=NAME (alarms, dashboard, autoscaling, upload "
        "trigger, endpoint, configs, models, topics, log groups, bucket, roles, budget) and "
        "delete them in dependency order. Safe to re-run: a second run finds nothing.",
    )
    p.add_argument("--name", required=True, help="deployment name")
    p.add_argument(
        "--keep-bucket",
        action="store_true",
        help="keep the deployment's S3 bucket and its inputs/results",
    )
    p.add_argument("--poll", type=float, default=10.0, help="seconds between status polls")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait at most")
    add_common_arguments(p)
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
            poll_s=args.poll,
            timeout_s=args.timeout,
        )
        summarise(plan, f"teardown {args.name}")
        return 0

    return run_reporting_errors(body)
