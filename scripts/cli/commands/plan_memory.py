"""`gen3d plan-memory`: which precision x INT8 x residency combinations fit a GPU, from
safetensors headers (no weights are loaded)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "plan-memory",
        help="table of precision x INT8 x stage residency combinations that fit a GPU",
        description="Read weights per stage from safetensors headers (nothing is loaded) "
        "and table which combinations fit: every stage resident on the GPU, or only the "
        "running stage (the rest wait in host RAM: GEN3D_STAGE_OFFLOAD for sam3d). "
        "t4 = ml.g4dn.xlarge (15 GiB usable, no bf16, 16 GiB RAM); a10g = ml.g5.xlarge "
        "(22 GiB usable, 16 GiB RAM).",
    )
    p.add_argument("--backend", choices=("proxy", "sam3d"), default="proxy")
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument(
        "--gpu",
        default="t4",
        help="t4, a10g, l4, l40s, a SageMaker instance type (ml.g6e.xlarge) or a GPU "
        "memory size in GiB (GPUs from the table gen3d deploy checks against)",
    )
    p.add_argument(
        "--activations-gib",
        type=float,
        default=1.0,
        help="peak activation memory to budget (not measured here; default 1)",
    )
    p.add_argument(
        "--host-ram-gib",
        type=float,
        default=None,
        help="host RAM (default: the GPU's smallest SageMaker instance, 16)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gen3d.model_opt.memory_plan import (
        format_table,
        parse_gpu,
        plan,
        proxy_stages,
        sam3d_stages,
    )

    try:
        gpu = parse_gpu(args.gpu)
        if not args.model_dir.is_dir():
            raise ValueError(f"{args.model_dir} is not a directory")
        if args.backend == "proxy":
            if not (args.model_dir / "proxy.safetensors").is_file():
                raise ValueError(f"{args.model_dir} has no proxy.safetensors")
            stages = proxy_stages(args.model_dir)
        else:
            stages = sam3d_stages(args.model_dir)
    except (ValueError, OSError) as exc:
        print(f"gen3d plan-memory: {exc}", file=sys.stderr)
        return 2
    host = args.host_ram_gib if args.host_ram_gib is not None else gpu.host_ram_gib
    rows = plan(stages, gpu, args.activations_gib, host)
    if args.json:
        print(json.dumps({"gpu": gpu.__dict__, "host_ram_gib": host, "rows": rows}, indent=2))
    else:
        print(format_table(stages, rows, gpu, args.activations_gib, host), end="")
    return 0
