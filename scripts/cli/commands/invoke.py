"""`gen3d invoke`: send a photo + mask to a server (or a SageMaker endpoint), save the 3D
file. A thin layer over gen3d.client.Client."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gen3d.client import Client, Gen3DClientError, InputError, Result, TransportError
from gen3d.client.inputs import FORMATS, SUFFIX


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "invoke",
        help="turn a photo + mask into a 3D file through a running server or endpoint",
        description="Send one photo and its object mask (or one RGBA PNG whose alpha is the "
        "mask) to a Gen3D server or SageMaker endpoint, write the result and print its path "
        "and size. In Python: gen3d.client.Client does the same (README).",
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
    p.add_argument("--format", choices=FORMATS, default="glb", help="output (glb)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--out", type=Path, help="output file (default: next to the image)")
    p.add_argument("--preview", type=Path, help="also write a PNG preview here")
    p.add_argument(
        "--timeout",
        type=float,
        help="seconds to wait for the answer (default 120 for --url, 70 for a real-time "
        "endpoint, 3600 for an async one: scaled to zero, it first has to start an instance)",
    )
    aws = p.add_argument_group("with --endpoint")
    aws.add_argument(
        "--mode",
        choices=("auto", "realtime", "async"),
        default="auto",
        help="auto reads the endpoint config (default)",
    )
    aws.add_argument(
        "--inference-component",
        help="real-time: the inference component to call (default: the endpoint's only one)",
    )
    aws.add_argument(
        "--scale-timeout",
        type=float,
        default=900.0,
        help="real-time: how long to keep retrying while the endpoint scales out from zero "
        "or a serverless variant is provisioned (default 900 s)",
    )
    aws.add_argument(
        "--input-s3",
        help="async: s3://bucket/key to upload the input to (default: the endpoint's async "
        "bucket, under async/input/)",
    )
    aws.add_argument("--poll", type=float, default=5.0, help="async: seconds between polls (5)")
    aws.add_argument("--region", help="AWS region")
    p.set_defaults(func=run)


def progress(line: str) -> None:
    print(f"gen3d invoke: {line}", file=sys.stderr, flush=True)


def _client(args: argparse.Namespace) -> Client:
    if not args.endpoint:
        return Client.local(args.url, timeout_s=args.timeout or 120.0, progress=progress)
    options: dict = {"region": args.region, "progress": progress}
    if args.timeout is not None:
        options["timeout_s"] = args.timeout
    if args.mode == "async":
        return Client.async_endpoint(args.endpoint, poll_s=args.poll, **options)
    options["inference_component"] = args.inference_component
    options["scale_timeout_s"] = args.scale_timeout
    if args.mode == "realtime":
        return Client.endpoint(args.endpoint, **options)
    return Client.for_endpoint(args.endpoint, poll_s=args.poll, **options)


def _generate(client: Client, args: argparse.Namespace) -> Result:
    if args.input_s3:  # async, to a key of the user's choosing
        job = client.submit(
            args.image, args.mask, seed=args.seed, format=args.format, input_s3_uri=args.input_s3
        )
        return job.wait(client.timeout_s)
    return client.generate(args.image, args.mask, seed=args.seed, format=args.format)


def run(args: argparse.Namespace) -> int:
    for path in (args.image, args.mask):
        if path is not None and not path.is_file():
            print(f"gen3d invoke: no such file: {path}", file=sys.stderr)
            return 2
    out = args.out or args.image.with_name(args.image.stem + "_3d" + SUFFIX[args.format])
    try:
        result = _generate(_client(args), args)
    except TransportError as exc:  # its message names what could not be reached
        print(f"gen3d invoke: {exc}", file=sys.stderr)
        return 1
    except InputError as exc:
        print(f"gen3d invoke: {exc}", file=sys.stderr)
        return 2
    except Gen3DClientError as exc:
        print(f"gen3d invoke: the request failed: {exc}", file=sys.stderr)
        return 1
    result.save(out)
    print(f"wrote {out} ({len(result.data):,} bytes)")
    meta = result.metadata
    shown = [
        f"{k}={meta[k]}" for k in sorted(meta) if k in ("backend", "faces", "vertices", "seed")
    ]
    if shown:
        print("metadata: " + ", ".join(shown))
    if args.preview:
        from gen3d.client.preview import render_preview

        started = time.perf_counter()
        preview = render_preview(out, args.preview)
        print(f"wrote {preview} (preview, {time.perf_counter() - started:.2f} s)")
    return 0
