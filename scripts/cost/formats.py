"""Render an estimate as JSON, CSV or a plain-text table (what `gen3d cost` prints)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from gen3d.cost.bench import BenchEntry
from gen3d.cost.model import OptionCost, async_with_target_tracking_tail, break_even, estimate
from gen3d.cost.prices import PriceTable
from gen3d.cost.waiting import cheapest_by_tolerance, duration, tolerance_lines
from gen3d.cost.workload import HOURS_PER_MONTH, Workload


@dataclass(frozen=True)
class TailComparison:
    """Async at one volume: deploy's empty-backlog scale-in vs target tracking's own."""

    idle_minutes: int
    idle: OptionCost
    target_tracking: OptionCost

    @property
    def saving_usd(self) -> float | None:
        if self.idle.total_usd is None or self.target_tracking.total_usd is None:
            return None
        return self.target_tracking.total_usd - self.idle.total_usd

    def as_dict(self) -> dict[str, Any]:
        def side(o: OptionCost) -> dict[str, Any]:
            return {
                "idle_tail_s": o.details.get("idle_tail_s"),
                "billed_hours": o.details.get("billed_hours"),
                "total_usd": _round(o.total_usd),
            }

        return {
            "idle_minutes": self.idle_minutes,
            "empty_backlog_alarm": side(self.idle),
            "target_tracking_scale_in": side(self.target_tracking),
            "saving_usd": _round(self.saving_usd),
        }


def tail_comparison(w: Workload, prices: PriceTable) -> TailComparison:
    idle = next(o for o in estimate(w, prices) if o.option == "async_scale_to_zero")
    return TailComparison(w.scaling.idle_minutes, idle, async_with_target_tracking_tail(w, prices))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


@dataclass
class Estimate:
    workload: Workload
    volumes: list[tuple[float, list[OptionCost]]]
    break_even: float | None
    prices: PriceTable
    bench: BenchEntry | None = None
    notes: list[str] = field(default_factory=list)
    tails: list[TailComparison] = field(default_factory=list)  # one per volume


def run_estimate(
    workload: Workload,
    volumes: list[float],
    prices: PriceTable,
    bench: BenchEntry | None = None,
) -> Estimate:
    rows = [(n, estimate(workload.with_volume(n), prices)) for n in volumes]
    tails = [tail_comparison(workload.with_volume(n), prices) for n in volumes]
    return Estimate(workload, rows, break_even(workload, prices), prices, bench, tails=tails)


def to_dict(e: Estimate) -> dict[str, Any]:
    w = e.workload
    scaling = asdict(w.scaling)
    scaling.update(
        idle_tail_s=w.scaling.idle_tail_s,
        target_tracking_tail_s=w.scaling.target_tracking_tail_s,
        scale_out_trigger_s=w.scaling.scale_out_trigger_s,
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
            {
                "images_per_month": n,
                "options": [o.as_dict() for o in options],
                "cheapest_by_wait": [
                    {"wait_s": round(step.wait_s, 1), "option": step.option.option}
                    for step in cheapest_by_tolerance(options)
                ],
                "async_idle_tail": tail.as_dict(),
            }
            for (n, options), tail in zip(e.volumes, e.tails, strict=True)
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
    "first_result_s",
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
                    "first_result_s": d["first_result_s"],
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
            f"{d['cold_start_share']:.0%} of requests wait for start-up"
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
        f"{w.arrivals} arrivals, {HOURS_PER_MONTH:g} h month, start-up "
        f"{w.assumptions.startup_s:g} s, async scale-in after {w.scaling.idle_minutes} idle min"
    ]
    if e.bench:
        lines.append(f"seconds per image from benchmark entry: {e.bench.describe()}")
    for (n, options), tail in zip(e.volumes, e.tails, strict=True):
        lines.append("")
        lines.append(f"{n:g} images/month")
        header = (
            f"  {'option':<48} {'first result':>12} {'total':>11} {'compute':>11} "
            f"{'fixed':>9}  notes"
        )
        lines.append(header)
        for o in options:
            wait = "-" if o.first_result_s is None or not o.feasible else duration(o.first_result_s)
            lines.append(
                f"  {o.label:<48} {wait:>12} {money(o.total_usd):>11} "
                f"{money(o.compute_usd):>11} {money(o.fixed_usd):>9}  {option_note(o)}"
            )
        lines.append("  cheapest for how long the first result may take:")
        lines += [f"    {line}" for line in tolerance_lines(options, money)]
        lines.append("  " + _tail_line(tail))
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


def _tail_line(t: TailComparison) -> str:
    if not t.idle.feasible:
        return "async idle tail: async is infeasible here"
    new, old = t.idle.details, t.target_tracking.details
    return (
        f"async idle tail: {t.idle_minutes} min of empty backlog (~{new['idle_tail_s']:g} s "
        f"billed) -> {new['billed_hours']:g} billed h, {money(t.idle.total_usd)}; target "
        f"tracking's own scale-in ({old['idle_tail_s']:g} s) -> {old['billed_hours']:g} h, "
        f"{money(t.target_tracking.total_usd)}; saving {money(t.saving_usd)}/month"
    )
