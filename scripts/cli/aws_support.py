"""Shared pieces of the AWS subcommands: common flags and one-line error reporting."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError

from gen3d.aws.errors import AwsCommandError
from gen3d.aws.plan import Plan


def add_common_arguments(
    parser: argparse.ArgumentParser,
    dry_run_help: str = "print the plan (every request body) and make no AWS call",
) -> None:
    parser.add_argument("--region", help="AWS region (default: your AWS configuration)")
    parser.add_argument("--dry-run", action="store_true", help=dry_run_help)


def run_reporting_errors(body: Callable[[], int]) -> int:
    """Run a command body; user-facing and AWS errors become one line on stderr, exit 1."""
    try:
        return body()
    except AwsCommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        print(
            f"error: AWS {exc.operation_name}: {error.get('Code')}: {error.get('Message')}",
            file=sys.stderr,
        )
    except BotoCoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
    return 1


def summarise(plan: Plan, what: str) -> None:
    if plan.dry_run:
        plan.out(f"dry run: {len(plan.steps)} step(s) for {what}; nothing was called")
    elif plan.changes:
        plan.out(f"{what}: {len(plan.changes)} change(s)")
    else:
        plan.out(f"{what}: already up to date, nothing changed")
