"""`gen3d batch`: run a batch-transform job on a deployment's model."""

from __future__ import annotations

import argparse

from gen3d.aws.batch import start_transform_job
from gen3d.aws.clients import AwsClients
from gen3d.aws.endpoint_spec import FLAVORS
from gen3d.aws.plan import Plan
from gen3d.aws.waiters import wait_for_transform_job
from gen3d.cli.aws_support import add_common_arguments, run_reporting_errors, summarise


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "batch",
        help="batch-transform every object under an S3 prefix",
        description="Start a SageMaker batch-transform job on the deployment's model, one "
        "request per input object. Concurrency, batch strategy and payload size come from "
        "the container's /execution-parameters. GPU instances get the batch GPU AMI with "
        "driver 535 (TransformAmiVersion). The same inputs map to the same job, so a "
        "re-run does not start a second one.",
    )
    p.add_argument("--name", required=True, help="deployment name")
    p.add_argument(
        "--input",
        required=True,
        help="s3:// prefix of the input images (the setup role reads BUCKET/batch/in/ only)",
    )
    p.add_argument(
        "--output",
        required=True,
        help="s3:// prefix for the results (the setup role writes BUCKET/batch/out/ only)",
    )
    p.add_argument("--model", help="model name (default: the deployment's current model)")
    p.add_argument("--instance-type", help="default: the endpoint's, else ml.m5.xlarge")
    p.add_argument("--instance-count", type=int, default=1)
    p.add_argument("--content-type", default="image/png", help="input content type")
    p.add_argument("--accept", help="result type, e.g. model/gltf-binary")
    p.add_argument(
        "--flavor",
        choices=FLAVORS,
        help="image flavor of the model (default: read from its image; a dry run cannot "
        "read it). GPU jobs need a flavor whose CUDA a batch AMI supports (sam3d)",
    )
    p.add_argument("--wait", action="store_true", help="wait for the job to finish")
    p.add_argument("--poll", type=float, default=30.0, help="seconds between status polls")
    p.add_argument("--timeout", type=float, default=24 * 3600.0, help="seconds to wait")
    add_common_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    def body() -> int:
        plan = Plan(dry_run=args.dry_run)
        clients = AwsClients(args.region)
        plan.out(f"batch {args.name}" + (" [dry run]" if plan.dry_run else ""))
        job = start_transform_job(
            plan,
            clients,
            args.name,
            args.input,
            args.output,
            instance_type=args.instance_type,
            instance_count=args.instance_count,
            content_type=args.content_type,
            accept=args.accept,
            model=args.model,
            flavor=args.flavor,
        )
        summarise(plan, f"batch {args.name}")
        if args.wait and not plan.dry_run:
            wait_for_transform_job(
                clients.sagemaker, job, poll_s=args.poll, timeout_s=args.timeout, progress=plan.out
            )
        return 0

    return run_reporting_errors(body)
