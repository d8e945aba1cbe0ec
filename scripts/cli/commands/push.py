"""`gen3d push`: push a locally built serving image to Amazon ECR and print its URI."""

from __future__ import annotations

import argparse
import sys

from gen3d.aws.errors import AwsCommandError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "push",
        help="push the serving image to ECR (creates the repository) and print its URI",
        description="Push a local image (NAME:TAG, as `make build` tags it) to Amazon ECR. "
        "The repository is created if missing, with scan-on-push and immutable tags; a tag "
        "that is already in ECR is left alone, so the command can be run again safely. "
        "Needs the docker CLI and a running Docker engine. Prints the image URI to stdout.",
    )
    p.add_argument("image", help="local image NAME:TAG, e.g. gen3d-gpu:1a2b3c4d5e6f")
    p.add_argument("--repository", help="ECR repository name (default: the image's NAME)")
    p.add_argument("--region", help="AWS region (default: the AWS configuration's region)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and call nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gen3d.aws import ecr
    from gen3d.aws.clients import AwsClients

    def progress(line: str) -> None:
        print(f"gen3d push: {line}", file=sys.stderr)

    try:
        clients = AwsClients(args.region)
        if args.dry_run:
            for step in ecr.push_plan(args.image, args.repository, clients.region):
                print(f"would: {step}")
            return 0
        result = ecr.push_image(
            clients.ecr, ecr.DockerCLI(), args.image, args.repository, progress=progress
        )
    except AwsCommandError as exc:
        print(f"gen3d push: {exc}", file=sys.stderr)
        return 1
    print(result.uri)
    return 0
