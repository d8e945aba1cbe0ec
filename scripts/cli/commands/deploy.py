"""`gen3d deploy`: register a serverless, asynchronous (scale-to-zero) or real-time endpoint."""

from __future__ import annotations

import argparse

from gen3d.aws.clients import AwsClients
from gen3d.aws.deploy import DeployOptions, deploy
from gen3d.aws.endpoint_spec import FLAVORS, MODES, DeploySpec, default_backend
from gen3d.aws.errors import AwsCommandError
from gen3d.aws.plan import Plan
from gen3d.aws.scaling_params import DEFAULT_IDLE_MINUTES, IDLE_MINUTES_RANGE
from gen3d.aws.storage import Lifecycle
from gen3d.cli.aws_support import add_common_arguments, run_reporting_errors, summarise
from gen3d.serve.backends import BUILTIN_NAMES


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "deploy",
        help="deploy the image as a SageMaker endpoint (serverless, async or realtime)",
        description="Create (or bring up to date) a model, endpoint config and endpoint, all "
        "tagged gen3d:deployment=NAME, and wait until InService. async adds an S3 bucket, "
        "SNS topics and autoscaling with minimum 0: target tracking on "
        "ApproximateBacklogSizePerInstance adds instances under load (its scale-in off), a "
        "step policy fired by HasBacklogWithoutCapacity starts the first one, and a step "
        "policy fired by an empty ApproximateBacklogSize for --idle-minutes takes the "
        "endpoint back to zero. "
        "serverless refuses GPU backends and images (no GPU there). Every mode gets a "
        "CloudWatch dashboard (gen3d-NAME) and alarms to the SNS error topic; realtime a "
        "blue/green DeploymentConfig that rolls back on the 5xx alarm (docs/deploy.md). "
        "Before creating anything it reads the account's SageMaker quota for the instance "
        "type (Service Quotas) and refuses, with the `gen3d setup --request-quota` command, "
        "a deployment that does not fit. Re-running changes nothing unless the inputs "
        "changed.",
    )
    p.add_argument("--name", required=True, help="deployment and endpoint name")
    p.add_argument("--mode", required=True, choices=MODES)
    p.add_argument("--image", required=True, help="container image URI (ECR)")
    p.add_argument("--model-data", help="s3:// URI of model.tar.gz (optional for silhouette)")
    p.add_argument("--role", required=True, help="SageMaker execution role ARN (gen3d setup)")
    p.add_argument(
        "--backend",
        choices=BUILTIN_NAMES,
        help="GEN3D_BACKEND of the model (default: the image flavor's: sam3d for a sam3d "
        "image, silhouette for cpu and gpu; a backend the image cannot run is refused)",
    )
    p.add_argument(
        "--flavor",
        choices=FLAVORS,
        help="image flavor (default: from the image tag, e.g. :0.1.0-gpu)",
    )
    p.add_argument(
        "--instance-type",
        help="async/realtime instance type (default ml.g4dn.xlarge, and for sam3d "
        "ml.g6.2xlarge: SAM 3D needs 24 GB of GPU memory with stage offload and then ~24 GB "
        "of host memory: ml.g6.2xlarge, ml.g5.2xlarge, or ml.g6e.xlarge without offload)",
    )
    p.add_argument("--initial-instances", type=int, default=1)
    p.add_argument(
        "--max-instances",
        type=int,
        default=2,
        help="autoscaling maximum (async), managed maximum (--scale-to-zero)",
    )
    p.add_argument("--memory-mb", type=int, default=4096, help="serverless memory (1024-6144)")
    p.add_argument("--max-concurrency", type=int, default=5, help="serverless concurrency")
    p.add_argument("--notify-email", help="async: subscribe this address to success/error")
    p.add_argument(
        "--seconds-per-image",
        type=float,
        help="measured seconds per image on this instance: realtime is refused when it "
        "cannot answer within the 60 s invocation limit (default: sam3d 60, others unchecked)",
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra model environment (GEN3D_* settings); repeatable",
    )
    p.add_argument(
        "--bucket", help="async: bucket for inputs/results (default gen3d-NAME-ACCOUNT-REGION)"
    )
    p.add_argument("--ia-days", type=int, default=30, help="bucket: days to STANDARD_IA")
    p.add_argument("--glacier-days", type=int, default=90, help="bucket: days to GLACIER")
    p.add_argument("--expire-days", type=int, default=365, help="bucket: days to expiry")
    p.add_argument("--log-retention-days", type=int, default=30)
    p.add_argument(
        "--upload-trigger-role",
        metavar="ARN",
        help="async: package the upload Lambda with this role and run it for "
        "every object uploaded under s3://BUCKET/input/",
    )
    p.add_argument(
        "--idle-minutes",
        type=int,
        metavar="M",
        help=f"async: scale in to zero after M minutes with nothing queued or in process "
        f"({IDLE_MINUTES_RANGE[0]}-{IDLE_MINUTES_RANGE[1]}, default {DEFAULT_IDLE_MINUTES}); "
        "each minute costs an idle instance-minute per burst (gen3d cost --idle-minutes)",
    )
    p.add_argument(
        "--scale-to-zero",
        action="store_true",
        help="realtime: inference components with 0 minimum copies (AWS only)",
    )
    p.add_argument("--no-wait", action="store_true", help="do not wait for InService")
    p.add_argument("--poll", type=float, default=15.0, help="seconds between status polls")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait at most")
    add_common_arguments(p)
    p.set_defaults(func=run)


def _env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise AwsCommandError(f"--env {pair!r}: expected KEY=VALUE")
        env[key] = value
    return env


# The instance type where --instance-type is not given: the smallest priced GPU that runs
# the backend (SAM 3D needs 24 GB; serve/instances.py).
DEFAULT_INSTANCE_TYPE = "ml.g4dn.xlarge"
DEFAULT_INSTANCE_TYPES = {"sam3d": "ml.g6.2xlarge"}  # the cheapest deploy accepts (host memory)


def run(args: argparse.Namespace) -> int:
    def body() -> int:
        backend = args.backend or default_backend(args.image, args.flavor)
        spec = DeploySpec(
            name=args.name,
            mode=args.mode,
            image=args.image,
            model_data=args.model_data,
            role_arn=args.role,
            backend=backend,
            instance_type=args.instance_type
            or DEFAULT_INSTANCE_TYPES.get(backend, DEFAULT_INSTANCE_TYPE),
            initial_instances=args.initial_instances,
            max_instances=args.max_instances,
            memory_mb=args.memory_mb,
            max_concurrency=args.max_concurrency,
            flavor=args.flavor,
            notify_email=args.notify_email,
            extra_env=_env(args.env),
            seconds_per_image=args.seconds_per_image,
        )
        options = DeployOptions(
            bucket=args.bucket,
            lifecycle=Lifecycle(args.ia_days, args.glacier_days, args.expire_days),
            log_retention_days=args.log_retention_days,
            wait=not args.no_wait,
            poll_s=args.poll,
            timeout_s=args.timeout,
            upload_trigger_role=args.upload_trigger_role,
            scale_to_zero=args.scale_to_zero,
            idle_minutes=args.idle_minutes,
        )
        plan = Plan(dry_run=args.dry_run)
        plan.out(
            f"deploy {spec.name} ({spec.mode}, backend {spec.backend}"
            + ("" if args.backend else f", the {spec.image_flavor or 'default'} image's")
            + ")"
            + (" [dry run]" if plan.dry_run else "")
        )
        result = deploy(spec, AwsClients(args.region), plan, options)
        summarise(plan, f"deployment {spec.name}")
        if not plan.dry_run:
            plan.out(
                f"endpoint {result.endpoint} serves {result.model} via "
                f"{result.endpoint_config}"
                + (f"; results in s3://{result.bucket}/" if result.bucket else "")
            )
        return 0

    return run_reporting_errors(body)
