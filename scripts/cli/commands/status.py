"""`gen3d status`: one screen on a deployment — endpoint, instances, last hour, async
backlog, and a month-to-date compute estimate (measured instance-hours x the cost model's
price)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gen3d.aws.clients import AwsClients
from gen3d.aws.status import Status, read_status
from gen3d.cli.aws_support import run_reporting_errors
from gen3d.cost.prices import PriceError, PriceTable, load_prices
from gen3d.cost.supporting import instance_price

NO_DATA = "no data"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "status",
        help="one screen on a deployment: state, instances, errors, latency, backlog, cost",
        description="Read a deployment's endpoint (DescribeEndpoint) and its CloudWatch "
        "metrics (GetMetricData): state and config, instances now and over the last 24 h, "
        "invocations, errors and latency percentiles of the last hour, the async backlog, "
        "and a month-to-date compute estimate (instance-hours from per-instance CPU samples "
        "x the price in scripts/cost/prices.json). Read-only. Figures marked '~' are "
        "estimates.",
    )
    p.add_argument("--name", required=True, help="deployment (endpoint) name")
    p.add_argument("--region", help="AWS region (default: your AWS configuration)")
    p.add_argument("--prices", type=Path, help="price overrides (same shape as prices.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    def body() -> int:
        status = read_status(AwsClients(args.region), args.name)
        try:
            prices = load_prices(args.prices)
        except PriceError as exc:
            print(f"warning: no cost estimate: {exc}")
            prices = None
        for line in render(status, prices):
            print(line)
        return 0

    return run_reporting_errors(body)


def _n(value: float | None, fmt: str = "{:.0f}", unit: str = "") -> str:
    return NO_DATA if value is None else fmt.format(value) + unit


def _ms(h: dict[str, float | None], *keys: str) -> str:
    if all(h.get(k) is None for k in keys):
        return NO_DATA
    return " / ".join(_n(h.get(k), "{:.1f}") for k in keys) + " ms"


def render(status: Status, prices: PriceTable | None) -> list[str]:
    s, h = status, status.last_hour
    where = s.instance_type or (
        f"serverless {s.serverless_memory_mb} MB" if s.serverless_memory_mb else ""
    )
    lines = [
        f"endpoint    {s.name}: {s.state} ({s.mode}, {where}, backend {s.backend or '?'})",
        f"            config {s.config}; created {_when(s.created)}, updated {_when(s.modified)}",
    ]
    if s.failure:
        lines.append(f"            failure: {s.failure}")
    if s.mode != "serverless":
        day = s.instances_by_hour
        hourly = (
            " ".join("." if v is None else f"{v:.1f}" for v in day)
            if any(v is not None for v in day)
            else NO_DATA
        )
        lines += [
            f"instances   now {_n(s.current_instances)} (desired {_n(s.desired_instances)})",
            f"            last 24 h, hourly average (~, '.' = none reporting): {hourly}",
        ]
    e5 = h.get("errors5xx")
    model_latency = _ms(h, "model_p50", "model_p90", "model_p99")
    if s.mode == "async":  # async endpoints publish no Invocations or OverheadLatency
        processed, failures = h.get("processed"), h.get("failures")
        handled = (processed or 0) + (failures or 0)
        rate = f" ({100 * (failures or 0) / handled:.1f} %)" if handled else ""
        lines += [
            f"last hour   processed {_n(processed)}, failed {_n(failures)}{rate}, "
            f"4xx {_n(h.get('errors4xx'))}, 5xx {_n(e5)}",
            f"            ModelLatency p50/p90/p99: {model_latency}",
            f"            TimeInBacklog p50/p99: {_ms(h, 'backlog_p50', 'backlog_p99')}",
        ]
    else:
        invocations = h.get("invocations")
        rate = f" ({100 * e5 / invocations:.1f} %)" if invocations and e5 is not None else ""
        lines += [
            f"last hour   invocations {_n(invocations)}, 4xx {_n(h.get('errors4xx'))}, "
            f"5xx {_n(e5)}{rate}",
            f"            ModelLatency p50/p90/p99: {model_latency}",
            f"            OverheadLatency p50/p99: {_ms(h, 'overhead_p50', 'overhead_p99')}",
        ]
    lines.append(
        f"            container queue p50/p99: {_ms(h, 'queue_p50', 'queue_p99')}; "
        f"inference p50/p99: {_ms(h, 'inference_p50', 'inference_p99')}"
    )
    if s.mode == "async":
        lines.append(
            f"async       backlog {_n(s.backlog.get('size'))} request(s); oldest "
            f"{_n(s.backlog.get('oldest_s'), unit=' s')}"
        )
    lines.append(f"this month  {_cost(s, prices)}")
    return lines


def _cost(s: Status, prices: PriceTable | None) -> str:
    since = f"since {s.month_start:%Y-%m-%d}" if s.month_start else ""
    if s.mode == "serverless":
        usage = s.serverless_gb_seconds_mtd
        key = "sagemaker.serverless.gb_second"
        if usage is None:
            return f"compute {since}: {NO_DATA}"
        text = f"~{usage:,.0f} GB-s {since} (ModelLatency summed x memory; ~)"
    else:
        usage = s.instance_hours_mtd
        kind = "async" if s.mode == "async" else "realtime"  # realtime-ic: realtime prices
        key = f"sagemaker.{kind}.{s.instance_type}"
        if usage is None:
            return f"instance-hours {since}: {NO_DATA}"
        text = f"~{usage:,.1f} instance-hours {since} (CPU samples / 60; ~)"
    if prices is None or not prices.has(key):
        return f"{text}; no price for {key} in the price table (--prices FILE adds one)"
    price = (
        prices.value(key)
        if s.mode == "serverless"
        else instance_price(prices, kind, s.instance_type or "")
    )
    entry = prices.entries[key]
    return (
        f"{text} x ${price:g} = ~${usage * price:,.2f} compute (estimate; price {entry.region}, "
        f"as of {entry.as_of}; storage, logs and data transfer not included)"
    )


def _when(value: object) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if hasattr(value, "strftime") else "?"
