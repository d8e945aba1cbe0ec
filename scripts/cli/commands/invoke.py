"""`gen3d invoke`: send a photo + mask to a server (or a SageMaker endpoint), save the 3D file."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gen3d.client.http import (
    SUFFIX,
    EncodedRequest,
    InvokeError,
    encode_request,
    metadata_of,
    post_invocation,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "invoke",
        help="turn a photo + mask into a 3D file through a running server or endpoint",
        description="Send one photo and its object mask (or one RGBA PNG whose alpha is the "
        "mask) to a Gen3D server, write the result and print its path and size.",
    )
    target = p.add_mutually_exclusive_group()
    target.add_argument(
        "--url",
        default="http://127.0.0.1:8080",
        help="server base URL (default http://127.0.0.1:8080)",
    )
    target.add_argument("--endpoint", help="SageMaker endpoint name (real-time or async)")
    p.add_argument("--image", type=Path, required=True, help="photo (PNG/JPEG) or RGBA PNG")
    p.add_argument("--mask", type=Path, help="mask image (white = object); omit for RGBA input")
    p.add_argument("--format", choices=sorted(SUFFIX), default="glb", help="output (glb)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--out", type=Path, help="output file (default: next to the image)")
    p.add_argument("--preview", type=Path, help="also write a PNG preview here")
    p.add_argument(
        "--timeout",
        type=float,
        help="seconds to wait (default 120 for --url, 3600 for --endpoint: an async "
        "endpoint scaled to zero first has to start an instance)",
    )
    aws = p.add_argument_group("with --endpoint")
    aws.add_argument(
        "--mode",
        choices=("auto", "realtime", "async"),
        default="auto",
        help="auto reads the endpoint config (default)",
    )
    aws.add_argument(
        "--input-s3",
        help="async: s3://bucket/key to upload the input to (default: the endpoint's async bucket)",
    )
    aws.add_argument("--poll", type=float, default=5.0, help="async: seconds between polls (5)")
    aws.add_argument("--region", help="AWS region")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for path in (args.image, args.mask):
        if path is not None and not path.is_file():
            print(f"gen3d invoke: no such file: {path}", file=sys.stderr)
            return 2
    if args.timeout is None:
        args.timeout = 3600.0 if args.endpoint else 120.0
    out = args.out or args.image.with_name(args.image.stem + "_3d" + SUFFIX[args.format])
    request = encode_request(args.image, args.mask, args.format, args.seed)
    try:
        if args.endpoint:
            data = _invoke_endpoint(args, request)
        else:
            data = post_invocation(args.url, request, timeout_s=args.timeout)
    except InvokeError as exc:
        print(f"gen3d invoke: the server refused the request: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"gen3d invoke: could not reach {args.endpoint or args.url}: {exc}", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    print(f"wrote {out} ({len(data):,} bytes)")
    meta = metadata_of(data)
    if meta:
        print(
            "metadata: "
            + ", ".join(
                f"{k}={meta[k]}"
                for k in sorted(meta)
                if k in ("backend", "faces", "vertices", "seed")
            )
        )
    if args.preview:
        from gen3d.client.preview import render_preview

        started = time.perf_counter()
        preview = render_preview(out, args.preview)
        print(f"wrote {preview} (preview, {time.perf_counter() - started:.2f} s)")
    return 0


def _invoke_endpoint(args: argparse.Namespace, request: EncodedRequest) -> bytes:
    """`--endpoint`: progress to stderr; every AWS failure becomes the client's InvokeError."""
    from botocore.exceptions import BotoCoreError, ClientError

    from gen3d.aws.clients import AwsClients
    from gen3d.aws.errors import AwsCommandError
    from gen3d.aws.invoke import invoke_endpoint

    try:
        clients = AwsClients(args.region)
        return invoke_endpoint(
            args.endpoint,
            request.body,
            request.content_type,
            request.accept,
            sagemaker=clients.sagemaker,
            runtime=clients.sagemaker_runtime,
            s3=clients.s3,
            mode=args.mode,
            input_s3_uri=args.input_s3,
            timeout_s=float(args.timeout),
            poll_s=float(args.poll),
            custom_attributes=request.custom_attributes,
            progress=lambda line: print(f"gen3d invoke: {line}", file=sys.stderr),
        )
    except (AwsCommandError, ClientError, BotoCoreError) as exc:
        raise InvokeError(str(exc)) from None
