"""`gen3d cost`: the monthly bill of each deployment option, and `gen3d cost report`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gen3d.aws.scaling_params import ASYNC_SCALING, DEFAULT_IDLE_MINUTES, IDLE_MINUTES_RANGE
from gen3d.cost import workload as workload_defaults
from gen3d.cost.bench import BenchError, pick_entry, read_entries
from gen3d.cost.prices import PriceError, load_prices
from gen3d.cost.workload import BACKEND_PROFILES, Assumptions, Workload

DEFAULT_INSTANCE = workload_defaults.DEFAULT_INSTANCE


def _volumes(text: str) -> list[float]:
    try:
        values = [float(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError("images per month must be numbers >= 0")
    return values


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _idle_minutes(text: str) -> int:
    low, high = IDLE_MINUTES_RANGE
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of minutes: {text!r}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"must be {low}-{high}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "cost",
        help="monthly cost of each deployment option (and which cannot work)",
        description="Price every deployment option side by side for a monthly volume: "
        "real-time always on, asynchronous scale-to-zero, real-time inference components "
        "scaled to zero, serverless, start/stop on demand and daily batch transform, plus "
        "the fixed costs (ECR, S3, CloudWatch, SNS, Lambda). Each option also shows how long "
        "a user waits for a first result (always-on: the work; async from zero: start-up + "
        "the work; daily batch: up to a day), and the output says which option is cheapest "
        "for each waiting tolerance. Prices come only from scripts/cost/prices.json "
        "(override with --prices). `gen3d cost report` writes docs/cost.md and the plot.",
    )
    p.add_argument(
        "--images-per-month",
        type=_volumes,
        metavar="N[,N2,...]",
        help="monthly volume(s), comma-separated",
    )
    speed = p.add_mutually_exclusive_group()
    speed.add_argument(
        "--seconds-per-image", type=_positive, metavar="S", help="GPU time per image"
    )
    speed.add_argument(
        "--bench",
        type=Path,
        metavar="RESULTS.json",
        help="read seconds per image from a benchmark results file",
    )
    p.add_argument(
        "--instance-type",
        help=f"instance to price (default {DEFAULT_INSTANCE}; with --bench also selects the entry)",
    )
    p.add_argument("--backend", choices=sorted(BACKEND_PROFILES), default="sam3d")
    p.add_argument("--arrivals", choices=("poisson", "daily-batch"), default="poisson")
    p.add_argument("--prices", type=Path, metavar="FILE", help="JSON file overriding price entries")
    p.add_argument(
        "--startup-s",
        type=_positive,
        default=Assumptions.startup_s,
        help="seconds from instance launch to serving (default %(default)g: the sam3d "
        "image's pull from its measured size, plus an estimate, not a measurement, of the "
        "rest; AWS documents only that provisioning takes 'several minutes' "
        "(endpoint-auto-scaling-zero-instances.html); see docs/cost.md)",
    )
    p.add_argument(
        "--idle-minutes",
        type=_idle_minutes,
        default=DEFAULT_IDLE_MINUTES,
        metavar="M",
        help="async: minutes of empty backlog before the scale-in to zero, as `gen3d deploy "
        f"--idle-minutes` sets it (default %(default)s; {IDLE_MINUTES_RANGE[0]}-"
        f"{IDLE_MINUTES_RANGE[1]})",
    )
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("--plot", type=Path, metavar="OUT.png", help="also write a log-log cost plot")
    p.set_defaults(func=run)

    sub = p.add_subparsers(dest="cost_command", metavar="report")
    r = sub.add_parser(
        "report",
        help="write docs/cost.md and the cost plot",
        description="Write cost.md (tables for 10..10000 images/month on ml.g4dn.xlarge and "
        "ml.g5.xlarge at 60 s/image, break-even, corrections to the original plan, the "
        "price table) and cost.png into --out.",
    )
    r.add_argument("--out", type=Path, default=Path("docs"), help="folder (default docs)")
    r.add_argument("--prices", dest="report_prices", type=Path, metavar="FILE")
    r.set_defaults(func=run_report)


def _fail(message: str) -> int:
    print(f"gen3d cost: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from gen3d.cost import formats

    missing = []  # every missing flag in one message, not one per try
    if args.images_per_month is None:
        missing.append("--images-per-month N")
    if args.seconds_per_image is None and args.bench is None:
        missing.append("--seconds-per-image S (or --bench RESULTS.json)")
    if missing:
        return _fail(
            f"missing {' and '.join(missing)}; e.g. gen3d cost --images-per-month 1000 "
            "--seconds-per-image 60 (or `gen3d cost report` for the standard tables)"
        )
    try:
        prices = load_prices(args.prices)
        instance = args.instance_type or DEFAULT_INSTANCE
        entry = None
        seconds = args.seconds_per_image
        if args.bench is not None:
            entry = pick_entry(read_entries(args.bench), args.backend, args.instance_type, instance)
            seconds = entry.seconds_per_image
            if args.instance_type is None and entry.instance_type:
                instance = entry.instance_type
        workload = Workload(
            images_per_month=args.images_per_month[0],
            seconds_per_image=seconds,
            instance_type=instance,
            backend=args.backend,
            arrivals=args.arrivals,
            assumptions=Assumptions(startup_s=args.startup_s),
            scaling=ASYNC_SCALING.with_idle_minutes(args.idle_minutes),
        )
        result = formats.run_estimate(workload, args.images_per_month, prices, entry)
    except (PriceError, BenchError, ValueError) as exc:
        return _fail(str(exc))
    render = {"table": formats.to_table, "json": formats.to_json, "csv": formats.to_csv}
    print(render[args.format](result))
    if entry is not None and entry.device == "cpu" and BACKEND_PROFILES[args.backend].needs_gpu:
        print(
            f"warning: the benchmark entry was measured on CPU; {instance} runs it on a GPU",
            file=sys.stderr,
        )
    if args.plot:
        from gen3d.cost.report import plot_costs

        plot_costs({instance: workload}, prices, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def run_report(args: argparse.Namespace) -> int:
    from gen3d.cost.report import write_report

    try:
        prices = load_prices(args.report_prices or args.prices)
        paths = write_report(args.out, prices)
    except (PriceError, ValueError) as exc:
        return _fail(str(exc))
    for path in paths:
        print(f"wrote {path}")
    return 0
