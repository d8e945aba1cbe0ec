"""`gen3d optimize`: precision, INT8 and torch.compile for a model directory, with a
manifest the server reproduces exactly, and a measured report (docs/model_opt.md).

gen3d optimize --backend proxy --model-dir models/proxy-tiny --out models/tiny-int8 \\
    --quantize int8-dynamic --device cpu
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from gen3d.serve.artifact.variant import Variant


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "optimize",
        help="fp16/bf16, INT8, torch.compile (+ shipped cache) for a model directory",
        description="Transform the backend's modules, write OUT (safetensors weights, "
        "compile cache, gen3d-manifest.json with library versions and the sha256 of every "
        "file) and a report (OUT/report/: weight bytes, peak memory, latency at batch 1 and "
        "max batch, drift vs fp32 as logits error, Chamfer distance and volume IoU). "
        "'auto' choices are made from measurements on this device.",
    )
    p.add_argument("--backend", choices=("proxy", "sam3d"), default="proxy")
    p.add_argument("--model-dir", type=Path, required=True, help="source model directory")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32")
    p.add_argument(
        "--quantize",
        choices=("none", "int8-weight", "int8-dynamic", "auto"),
        default="none",
        help="INT8 for Linear layers; auto: measure each mode "
        "here and keep the fastest within the drift limits",
    )
    p.add_argument(
        "--int8-engine",
        choices=("auto", "torchao", "pytorch"),
        default="auto",
        help="torchao quantize_, or PyTorch's quantize_dynamic (CPU, fp32 only); "
        "auto: measure both where both apply",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile every stage and ship inductor's cache in OUT",
    )
    p.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="with --compile: do not ship the cache (the server compiles at start)",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument(
        "--max-batch-size",
        type=int,
        default=8,
        help="largest batch measured and compiled for (default 8)",
    )
    p.add_argument("--runs", type=int, default=10, help="timed runs per batch size (median)")
    p.add_argument("--no-report", action="store_true", help="skip measuring")
    p.add_argument(
        "--cold-start-runs",
        type=int,
        default=0,
        help="with --compile: also time real server starts to /ping 200, with "
        "and without the compile cache, this many times each",
    )
    p.set_defaults(func=run)


def _err(message: str) -> int:
    print(f"gen3d optimize: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    if args.backend == "sam3d":
        return _err(
            "the sam3d backend is optimised at load time from its manifest; see "
            "docs/model_opt.md (needs SAM 3D Objects and a GPU, not available here)"
        )
    if not args.model_dir.is_dir():
        return _err(f"{args.model_dir} is not a directory")
    if args.max_batch_size < 1 or args.runs < 1:
        return _err("--max-batch-size and --runs must be >= 1")
    import torch

    from gen3d.serve.artifact.precision import OptimizeError
    from gen3d.serve.artifact.variant import Variant
    from gen3d.serve.errors import ArtifactError

    if args.device == "cuda" and not torch.cuda.is_available():
        return _err("--device cuda: no CUDA device is visible")
    device = torch.device(args.device)
    modes = ["none", "int8-weight", "int8-dynamic"] if args.quantize == "auto" else [args.quantize]
    candidates = []
    for mode in modes:
        engines = (
            [None]
            if mode == "none"
            else (["torchao", "pytorch"] if args.int8_engine == "auto" else [args.int8_engine])
        )
        for engine in engines:
            if engine == "pytorch" and (
                mode == "int8-weight" or args.device != "cpu" or args.precision != "fp32"
            ):
                if args.int8_engine == "pytorch":
                    return _err(
                        "--int8-engine pytorch needs --device cpu, --precision fp32 "
                        "and --quantize int8-dynamic"
                    )
                continue
            candidates.append(Variant(args.precision, mode, engine, args.compile))
    try:
        if len(candidates) == 1:
            return _single(args, candidates[0], device)
        return _choose(args, candidates, device)
    except (OptimizeError, ArtifactError) as exc:
        return _err(str(exc))


def _progress(message: str) -> None:
    print(message, flush=True)


def _single(args: argparse.Namespace, variant: Variant, device: torch.device) -> int:
    from gen3d.model_opt.optimize import build_proxy_artifact

    build_proxy_artifact(
        args.model_dir,
        args.out,
        variant,
        device,
        max_batch_size=args.max_batch_size,
        ship_compile_cache=not args.no_compile_cache,
        progress=_progress,
    )
    if not args.no_report:
        _report(args, {variant.label: args.out})
    return 0


def _choose(args: argparse.Namespace, candidates: list[Variant], device: torch.device) -> int:
    from gen3d.model_opt.optimize import build_proxy_artifact

    with tempfile.TemporaryDirectory(prefix="gen3d-optimize-") as tmp:
        dirs = {}
        for i, variant in enumerate(candidates):
            dirs[variant.label] = Path(tmp) / f"v{i}"
            build_proxy_artifact(
                args.model_dir,
                dirs[variant.label],
                variant,
                device,
                max_batch_size=args.max_batch_size,
                ship_compile_cache=not args.no_compile_cache,
                progress=_progress,
            )
        report = _measure(args, dirs)
        from gen3d.model_opt.report import recommend

        pick = recommend(report["rows"], among=list(dirs))
        chosen = pick["label"]
        report["chosen"] = {
            **pick,
            "note": "best of the requested candidates; 'recommendation' also considers plain fp32",
        }
        print(f"chose {chosen}: {pick['why']}")
        if args.out.exists():
            shutil.rmtree(args.out)
        shutil.copytree(dirs[chosen], args.out)
        _write(args, report)
    return 0


def _measure(args: argparse.Namespace, dirs: dict[str, Path]) -> dict:
    from gen3d.model_opt.report import measure_variants

    return measure_variants(
        args.model_dir, dirs, args.device, args.max_batch_size, args.runs, progress=_progress
    )


def _report(args: argparse.Namespace, dirs: dict[str, Path]) -> None:
    report = _measure(args, dirs)
    if args.compile and args.cold_start_runs > 0:
        from gen3d.model_opt.cold_start import compare_cold_starts

        report["cold_start"] = compare_cold_starts(
            args.out, args.device, args.cold_start_runs, args.max_batch_size, _progress
        )
    _write(args, report)


def _write(args: argparse.Namespace, report: dict) -> None:
    from gen3d.model_opt.manifest import write_manifest
    from gen3d.model_opt.report import to_markdown, write_report
    from gen3d.serve.artifact.manifest import read_manifest

    json_path, md_path = args.out / "report" / "report.json", args.out / "report" / "report.md"
    write_report(report, json_path, md_path)
    manifest = read_manifest(args.out)
    if manifest is not None:  # the report joins the hashed files
        extra = {
            k: v
            for k, v in manifest.items()
            if k not in ("format", "version", "backend", "created", "applied", "libraries", "files")
        }
        write_manifest(args.out, manifest["backend"], manifest["applied"], extra)
    print(to_markdown(report))
    print(f"report: {json_path} and {md_path}")
    print(json.dumps({"recommendation": report["recommendation"]["label"]}))
