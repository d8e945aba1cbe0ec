"""Render an estimate as JSON, CSV or a plain-text table (what `gen3d cost` prints)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from gen3d.cost.bench import BenchEntry
from gen3d.cost.model import OptionCost, break_even, estimate
from gen3d.cost.prices import PriceTable
from gen3d.cost.workload import HOURS_PER_MONTH, Workload


@dataclass
class Estimate:
    workload: Workload
    volumes: list[tuple[float, list[OptionCost]]]
    break_even: float | None
    prices: PriceTable
    bench: BenchEntry | None = None
    notes: list[str] = field(default_factory=list)


def run_estimate(
    workload: Workload,
    volumes: list[float],
    prices: PriceTable,
    bench: BenchEntry | None = None,
) -> Estimate:
    rows = [(n, estimate(workload.with_volume(n), prices)) for n in volumes]
    return Estimate(workload, rows, break_even(workload, prices), prices, bench)


def to_dict(e: Estimate) -> dict[str, Any]:
    w = e.workload
    scaling = asdict(w.scaling)
    scaling.update(
        idle_tail_s=w.scaling.idle_tail_s, scale_out_trigger_s=w.scaling.scale_out_trigger_s
    )
    return {
        "workload": {
            "seconds_per_image": w.seconds_per_image,
            "instance_type": w.instance_type,
            "backend": w.backend,
            "arrivals": w.arrivals,
            "hours_per_month": HOURS_PER_MONTH,
        },
        "bench_entry": asdict(e.bench) if e.bench else None,
        "assumptions": w.assumptions.as_dict(),
        "backend_profile": asdict(w.profile),
        "scaling": scaling,
        "results": [
            {"images_per_month": n, "options": [o.as_dict() for o in options]}
            for n, options in e.volumes
        ],
        "break_even_images_per_month": None if e.break_even is None else round(e.break_even, 1),
        "break_even_meaning": "monthly volume above which always-on real-time is cheaper "
        "than asynchronous scale-to-zero (totals incl. fixed costs)",
        "prices_used": e.prices.used_prices(),
        "prices_overridden": sorted(e.prices.overridden),
    }


def to_json(e: Estimate) -> str:
    return json.dumps(to_dict(e), indent=2)


CSV_FIELDS = (
    "images_per_month",
    "option",
    "feasible",
    "total_usd",
    "compute_usd",
    "supporting_usd",
    "fixed_usd",
    "billed_hours",
    "bursts_per_month",
    "first_result_wait_s",
    "reasons",
)


def to_csv(e: Estimate) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for n, options in e.volumes:
        for o in options:
            d = o.as_dict()
            writer.writerow(
                {
                    "images_per_month": n,
                    "option": o.option,
                    "feasible": o.feasible,
                    "total_usd": d["total_usd"],
                    "compute_usd": d["compute_usd"],
                    "supporting_usd": round(sum(o.supporting_usd.values()), 2),
                    "fixed_usd": d["fixed_usd"],
                    "billed_hours": o.details.get("billed_hours"),
                    "bursts_per_month": o.details.get("bursts_per_month"),
                    "first_result_wait_s": o.details.get("first_result_wait_s"),
                    "reasons": "; ".join(o.reasons),
                }
            )
    return out.getvalue()


def money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


def option_note(o: OptionCost) -> str:
    if not o.feasible:
        return "INFEASIBLE: " + "; ".join(o.reasons)
    d = o.details
    if "bursts_per_month" in d:
        note = (
            f"{d['bursts_per_month']:g} bursts, {d['billed_hours']:g} billed h, "
            f"first result {d['first_result_wait_s'] / 60:.1f} min"
        )
        if "failed_requests_per_month" in d:
            note += f", ~{d['failed_requests_per_month']:g} failed calls"
        return note
    if "instances" in d:
        return (
            f"{d['instances']} instance(s), {d['billed_hours']:g} h, "
            f"utilisation {d['utilisation']:.1%}"
        )
    if "jobs_per_month" in d:
        return f"{d['jobs_per_month']:g} jobs, {d['billed_hours']:g} billed h"
    if "gb_seconds" in d:
        return f"{d['memory_gb']:g} GB x {d['gb_seconds']:g} GB-s"
    return ""


def to_table(e: Estimate) -> str:
    w = e.workload
    lines = [
        f"gen3d cost: backend {w.backend} on {w.instance_type}, {w.seconds_per_image:g} s/image, "
        f"{w.arrivals} arrivals, {HOURS_PER_MONTH:g} h month"
    ]
    if e.bench:
        lines.append(f"seconds per image from benchmark entry: {e.bench.describe()}")
    for n, options in e.volumes:
        lines.append("")
        lines.append(f"{n:g} images/month")
        header = f"  {'option':<48} {'total':>11} {'compute':>11} {'fixed':>9}  notes"
        lines.append(header)
        for o in options:
            lines.append(
                f"  {o.label:<48} {money(o.total_usd):>11} {money(o.compute_usd):>11} "
                f"{money(o.fixed_usd):>9}  {option_note(o)}"
            )
    lines.append("")
    if e.break_even is None:
        lines.append(
            "break-even: scale-to-zero stays cheaper than always-on up to one instance's capacity"
        )
    else:
        lines.append(
            f"break-even: always-on is cheaper than async scale-to-zero above "
            f"{e.break_even:,.0f} images/month"
        )
    unverified = [k for k in sorted(e.prices.used) if e.prices.entries[k].verified == "unverified"]
    if unverified:
        lines.append("unverified prices used: " + ", ".join(unverified))
    if e.prices.overridden:
        lines.append("overridden prices: " + ", ".join(sorted(e.prices.overridden)))
    return "\n".join(lines)
