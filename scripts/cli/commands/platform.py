"""`gen3d platform`: image flavors, their docker build arguments and the CUDA <-> AMI check
(data: gen3d/aws/platform.json)."""

from __future__ import annotations

import argparse
import sys

from gen3d.aws.platform import build_args, pairing_problems


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "platform",
        help="image flavors: docker build arguments, CUDA <-> inference AMI check",
        description="Image flavors and their CUDA / SageMaker InferenceAmiVersion pairing.",
    )
    sub = p.add_subparsers(dest="platform_command", required=True, metavar="ACTION")
    b = sub.add_parser("build-args", help="print the docker build arguments of a flavor")
    b.add_argument("flavor", nargs="?", help="cpu, gpu or sam3d (default: the default flavor)")
    b.set_defaults(func=run_build_args)
    c = sub.add_parser("check", help="fail when a GPU flavor's CUDA does not run on its AMI")
    c.set_defaults(func=run_check)


def run_build_args(args: argparse.Namespace) -> int:
    try:
        print(" ".join(build_args(args.flavor)))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def run_check(args: argparse.Namespace) -> int:
    problems = pairing_problems()
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    if not problems:
        print("every GPU flavor's CUDA runs on its InferenceAmiVersion")
    return 1 if problems else 0
