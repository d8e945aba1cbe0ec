"""`gen3d proxy`: create and describe the random-weight `proxy` model.

gen3d proxy init --size tiny --seed 0 --out models/proxy-tiny
gen3d proxy describe --size full
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "proxy",
        help="create the random-weight proxy model (SAM 3D's compute shape)",
        description="The proxy backend is a random-weight network with SAM 3D Objects' "
        "compute and memory shape, for performance work only (no quality claim).",
    )
    sub = p.add_subparsers(dest="proxy_command", metavar="ACTION")

    init = sub.add_parser(
        "init",
        help="write deterministic weights (safetensors) and config.json into a directory",
        description="Write config.json and proxy.safetensors into OUT. The same size and "
        "seed always give a byte-identical weights file. `full` is ~2.1B parameters "
        "(~8.5 GB in fp32), written one tensor at a time on the CPU; no GPU needed.",
    )
    init.add_argument(
        "--size",
        choices=("tiny", "full"),
        default="tiny",
        help="tiny: CPU tests (default); full: GPU, SAM 3D-sized",
    )
    init.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    init.add_argument(
        "--out",
        type=Path,
        required=True,
        help="model directory to write (GEN3D_MODEL_DIR of the server)",
    )
    init.set_defaults(func=run_init)

    describe = sub.add_parser(
        "describe",
        help="print parameter counts and step counts of a size (computed, not stored)",
        description="Build the model on the meta device (no memory) and print its "
        "parameter counts per stage, step counts and latent / occupancy sizes.",
    )
    describe.add_argument("--size", choices=("tiny", "full"), default="tiny")
    describe.add_argument("--json", action="store_true", help="print JSON")
    describe.add_argument(
        "--flops",
        action="store_true",
        help="also count FLOPs per sample and stage (meta tensors; ~20 s for full)",
    )
    describe.set_defaults(func=run_describe)
    p.set_defaults(func=lambda args: _usage(p))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_init(args: argparse.Namespace) -> int:
    from gen3d.model_opt.proxy_model import init_proxy_model
    from gen3d.serve.backends.proxy.model import config_for, parameter_counts

    if args.seed < 0:
        print("gen3d proxy init: --seed must be >= 0", file=sys.stderr)
        return 2
    if args.out.exists() and not args.out.is_dir():
        print(f"gen3d proxy init: {args.out} exists and is not a directory", file=sys.stderr)
        return 2
    config = config_for(args.size)
    total = parameter_counts(config)["total"]
    print(
        f"writing proxy {args.size} ({total:,} parameters, {4 * total / 1e9:.2f} GB fp32) "
        f"seed {args.seed} to {args.out}",
        flush=True,
    )
    start = time.monotonic()
    last = [-1]

    def progress(done: int, size: int) -> None:
        pct = int(100 * done / size) if size else 100
        if size > 100_000_000 and pct // 10 != last[0]:  # only worth reporting when big
            last[0] = pct // 10
            print(f"  {pct:3d}%  {done / 1e9:.2f} / {size / 1e9:.2f} GB", flush=True)

    try:
        config_path, weights_path = init_proxy_model(config, args.seed, args.out, progress)
    except OSError as exc:
        print(f"gen3d proxy init: cannot write to {args.out}: {exc.strerror}", file=sys.stderr)
        return 1
    print(
        f"wrote {config_path} and {weights_path} ({weights_path.stat().st_size:,} bytes) "
        f"in {time.monotonic() - start:.1f} s"
    )
    return 0


def describe(size: str, flops: bool = False) -> dict[str, object]:
    from gen3d.serve.backends.proxy.flow import flop_counts
    from gen3d.serve.backends.proxy.model import config_for, parameter_counts

    config = config_for(size)
    info: dict[str, object] = {
        "size": size,
        "parameters": parameter_counts(config),
        "image_size": config.image_size,
        "patch_size": config.patch_size,
        "image_tokens": (config.image_size // config.patch_size) ** 2 + 1,
        "latent_tokens": config.tokens,
        "latent_channels": config.latent_channels,
        "stage1_steps": config.stage1_steps,
        "stage2_steps": config.stage2_steps,
        "cfg": [config.stage1_cfg, config.stage2_cfg],
        "occupancy_resolution": config.occupancy_resolution,
    }
    if flops:
        info["flops_per_sample"] = flop_counts(config)
    return info


def run_describe(args: argparse.Namespace) -> int:
    info = describe(args.size, flops=args.flops)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    params = info["parameters"]
    assert isinstance(params, dict)
    print(f"proxy {args.size}")
    for name, count in params.items():
        print(f"  {name:<20} {count:>15,}")
    for key in (
        "image_size",
        "image_tokens",
        "latent_tokens",
        "stage1_steps",
        "stage2_steps",
        "cfg",
        "occupancy_resolution",
    ):
        print(f"  {key:<20} {info[key]}")
    flops = info.get("flops_per_sample")
    if isinstance(flops, dict):
        print("  FLOPs per sample (GFLOP)")
        for name, count in flops.items():
            print(f"    {name:<18} {count / 1e9:>14,.1f}")
    return 0
