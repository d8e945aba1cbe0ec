"""`gen3d package`: a model directory -> model.tar.gz or an uncompressed S3 prefix, with
a gen3d-manifest.json (sha256 of every file) the server verifies at load."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "package",
        help="package a model directory as model.tar.gz or an uncompressed S3 prefix",
        description="OUT is a local path or s3://bucket/key ending in .tar.gz (SageMaker "
        "ModelDataUrl), or with --uncompressed an s3://bucket/prefix/ (ModelDataSource, "
        "CompressionType None: no download-and-extract at cold start). S3 uploads use "
        "boto3's normal configuration (AWS_ENDPOINT_URL honoured) and skip objects whose "
        "stored sha256 already matches.",
    )
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--out", required=True, help="model.tar.gz, s3://b/k.tar.gz or s3://b/prefix/")
    p.add_argument("--uncompressed", action="store_true", help="upload files under a prefix")
    p.add_argument("--backend", choices=("auto", "proxy", "sam3d"), default="auto")
    p.add_argument("--torch-home", type=Path, help="sam3d: TORCH_HOME to bundle (DINOv2)")
    p.add_argument("--hf-home", type=Path, help="sam3d: HF_HOME to bundle (MoGe)")
    p.add_argument("--region", help="AWS region (default: boto3's configuration)")
    p.add_argument("--dry-run", action="store_true", help="list what would be written")
    p.set_defaults(func=run)


def _err(message: str) -> int:
    print(f"gen3d package: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from gen3d.model_opt import package as pkg
    from gen3d.serve.errors import ArtifactError

    if not args.model_dir.is_dir():
        return _err(f"{args.model_dir} is not a directory")
    s3_out = args.out.startswith("s3://")
    if args.uncompressed and not s3_out:
        return _err("--uncompressed needs an s3://bucket/prefix/ destination")
    if not args.uncompressed and not args.out.endswith(".tar.gz"):
        return _err("--out must end in .tar.gz (or pass --uncompressed with an S3 prefix)")
    extra = {}
    if args.torch_home:
        extra[pkg.SAM3D_CACHES["torch"]] = args.torch_home
    if args.hf_home:
        extra[pkg.SAM3D_CACHES["huggingface"]] = args.hf_home
    try:
        backend = None if args.backend == "auto" else args.backend
        package = pkg.collect(args.model_dir, backend, extra)
        bucket, key = pkg.parse_s3_url(args.out) if s3_out else ("", "")
    except (ValueError, ArtifactError, OSError) as exc:
        return _err(str(exc))
    for warning in package.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"{package.backend} package: {len(package.entries) + 1} files, "
        f"{package.total_bytes:,} bytes -> {args.out}",
        flush=True,
    )
    if args.dry_run:
        for name in sorted(package.entries):
            print(f"  {name}")
        return 0
    if not s3_out:
        pkg.write_tar_gz(package, Path(args.out))
    else:
        from gen3d.aws.clients import boto3_session

        s3 = boto3_session(args.region).client("s3")
        if args.uncompressed:
            counts = pkg.upload_prefix(package, s3, bucket, key, progress=print)
            print(f"uploaded {counts['uploaded']}, unchanged {counts['unchanged']}")
        else:
            pkg.upload_tar_gz(package, s3, bucket, key)
    print(json.dumps(pkg.model_data_hint(args.out, args.uncompressed), indent=2))
    return 0
