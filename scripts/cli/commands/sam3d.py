"""`gen3d sam3d prepare`: SAM 3D Objects' weights and the caches it loads offline, laid out
as the sam3d backend reads them, with the manifest the server verifies; then the commands
that upload and deploy it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sam3d",
        help="SAM 3D Objects' model directory: fetch the weights and caches (prepare)",
        description=__doc__,
    )
    commands = p.add_subparsers(dest="sam3d_command", metavar="COMMAND")
    prep = commands.add_parser(
        "prepare",
        help="fetch SAM 3D Objects (gated, your Hugging Face token), DINOv2 and MoGe into DIR",
        description="Fetch facebook/sam-3d-objects' checkpoints/ (gated on Hugging Face: "
        "request access at https://huggingface.co/facebook/sam-3d-objects first; the token "
        "comes from --token, HF_TOKEN or `hf auth login`) into DIR/checkpoints/hf, DINOv2's "
        "torch.hub code and weights into DIR/caches/torch and MoGe's model.pt into "
        "DIR/caches/huggingface, then write DIR/gen3d-manifest.json. The sizes are printed "
        "before each download. Interrupted downloads resume when the same command runs "
        "again; files already complete are not fetched again. HF_ENDPOINT is honoured.",
    )
    prep.add_argument("--out", type=Path, required=True, help="model directory to fill")
    prep.add_argument("--token", help="Hugging Face token (default: HF_TOKEN or the stored one)")
    prep.add_argument("--revision", help="facebook/sam-3d-objects revision (default: main)")
    prep.add_argument(
        "--cache-dir",
        type=Path,
        help="Hugging Face cache for the checkpoints (default: HF_HOME's); files are hard "
        "linked from it into --out where the file system allows, else copied",
    )
    prep.add_argument(
        "--moge-repo", help="MoGe's Hugging Face repo (default: the one pipeline.yaml names)"
    )
    prep.add_argument(
        "--torch-home",
        type=Path,
        help="copy DINOv2 from this TORCH_HOME (where torch.hub.load('facebookresearch/"
        "dinov2', 'dinov2_vitl14_reg') ran) instead of downloading it",
    )
    prep.add_argument("--dinov2-code-url", help=argparse.SUPPRESS)  # mirrors; tests
    prep.add_argument("--dinov2-weights-url", help=argparse.SUPPRESS)
    prep.add_argument(
        "--s3",
        metavar="s3://BUCKET/PREFIX/",
        help="where the printed `gen3d package` command uploads to",
    )
    prep.set_defaults(func=run_prepare)
    p.set_defaults(func=lambda _args: p.print_help() or 2)


def next_commands(out: Path, s3: str | None) -> list[str]:
    """What to run after prepare: upload, then deploy on a GPU that fits SAM 3D."""
    prefix = (s3 or "s3://YOUR-BUCKET/sam3d/").rstrip("/") + "/"
    return [
        f"gen3d package --model-dir {out} --out {prefix} --uncompressed",
        "gen3d deploy --name sam3d --mode async --image <ECR URI of gen3d-sam3d> "
        f"--role <role ARN from gen3d setup> --model-data {prefix} "
        "--instance-type ml.g6e.xlarge",
    ]


def run_prepare(args: argparse.Namespace) -> int:
    from gen3d.model_opt import sam3d_weights as weights
    from gen3d.serve.errors import ArtifactError

    if args.s3 and not args.s3.startswith("s3://"):
        print(f"gen3d sam3d prepare: --s3 {args.s3!r} is not an s3:// URI", file=sys.stderr)
        return 2
    urls = {
        key: value
        for key, value in (
            ("dinov2_code_url", args.dinov2_code_url),
            ("dinov2_weights_url", args.dinov2_weights_url),
        )
        if value
    }
    try:
        result = weights.prepare(
            args.out,
            token=args.token,
            revision=args.revision,
            cache_dir=args.cache_dir,
            moge_repo=args.moge_repo,
            torch_home=args.torch_home,
            progress=lambda line: print(line, flush=True),
            **urls,
        )
    except (weights.PrepareError, ArtifactError, OSError) as exc:
        print(f"gen3d sam3d prepare: {exc}", file=sys.stderr)
        return 1
    print(f"{result.out}: {result.files} files, {result.bytes / 1e9:.2f} GB, manifest written")
    print("next:")
    for command in next_commands(args.out, args.s3):
        print(f"  {command}")
    return 0
