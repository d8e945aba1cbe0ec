"""Monthly cost of every deployment option for one workload, and the break-even volume.

Each option returns an `OptionCost`: compute, the supporting services (ECR, S3,
CloudWatch, SNS, Lambda, data processed), which part of that is fixed (paid at zero
volume), whether the option can work at all and, if not, why. Prices come only from
the `PriceTable`; non-price inputs only from the `Workload` and its `Assumptions`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from scipy.optimize import brentq

from gen3d.cost.bursts import BurstEstimate, daily_batch_bursts, poisson_bursts
from gen3d.cost.prices import PriceTable
from gen3d.cost.supporting import (
    alarms,
    cloudwatch_logs,
    data_processed,
    fixed_storage,
    instance_price,
    lambda_invocations,
    s3_payloads,
    sns_notifications,
)
from gen3d.cost.workload import (
    ASYNC_MAX_CALL_S,
    DAYS_PER_MONTH,
    HOURS_PER_MONTH,
    REALTIME_MAX_CALL_S,
    REALTIME_MAX_PAYLOAD_MB,
    SERVERLESS_MAX_CALL_S,
    SERVERLESS_MAX_IMAGE_GB,
    SERVERLESS_MAX_MEMORY_GB,
    SERVERLESS_MAX_PAYLOAD_MB,
    Workload,
)
from gen3d.serve.instances import backend_fit

MONTH_S = HOURS_PER_MONTH * 3600.0
DAY_S = 86400.0
# Async: target tracking's high and low alarms (the low one counted even with its scale-in
# disabled, to stay on the safe side), the alarm that scales out from zero and the
# empty-backlog alarm that scales in to zero. Inference components: the first three.
ASYNC_SCALING_ALARMS = 4
IC_SCALING_ALARMS = 3

OPTION_LABELS = {
    "realtime_always_on": "Real-time, always on",
    "async_scale_to_zero": "Asynchronous, scale to zero",
    "realtime_ic_scale_to_zero": "Real-time, inference components scaled to zero",
    "serverless": "Serverless",
    "start_stop_on_demand": "Start/stop endpoint on demand",
    "batch_transform_daily": "Batch transform, one job a day",
}


@dataclass
class OptionCost:
    option: str
    feasible: bool
    reasons: list[str] = field(default_factory=list)  # why it cannot work
    compute_usd: float | None = None
    supporting_usd: dict[str, float] = field(default_factory=dict)
    fixed_usd: float = 0.0  # the part of supporting_usd paid at zero volume
    details: dict[str, Any] = field(default_factory=dict)
    caveats: list[str] = field(default_factory=list)
    # How long a user waits for a first result in the worst ordinary case (a request that
    # finds nothing running), and what that wait is made of.
    first_result_s: float | None = None
    first_result_basis: str = ""

    @property
    def label(self) -> str:
        return OPTION_LABELS[self.option]

    @property
    def total_usd(self) -> float | None:
        if not self.feasible or self.compute_usd is None:
            return None
        return self.compute_usd + sum(self.supporting_usd.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "option": self.option,
            "label": self.label,
            "feasible": self.feasible,
            "reasons": self.reasons,
            "compute_usd": _round(self.compute_usd),
            "supporting_usd": {k: _round(v) for k, v in self.supporting_usd.items()},
            "fixed_usd": _round(self.fixed_usd),
            "total_usd": _round(self.total_usd),
            "details": self.details,
            "caveats": self.caveats,
            "first_result_s": _round(self.first_result_s),
            "first_result_basis": self.first_result_basis,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _bursts(w: Workload, trigger_s: float, startup_s: float, tail_s: float) -> BurstEstimate:
    if w.arrivals == "daily-batch":
        return daily_batch_bursts(
            w.images_per_month, w.seconds_per_image, trigger_s, startup_s, tail_s, DAYS_PER_MONTH
        )
    return poisson_bursts(
        w.images_per_month, w.seconds_per_image, trigger_s, startup_s, tail_s, MONTH_S
    )


def _burst_details(b: BurstEstimate) -> dict[str, Any]:
    return {
        "bursts_per_month": round(b.bursts, 2),
        "requests_per_burst": round(b.requests_per_burst, 3),
        "billed_hours": round(b.billed_s / 3600.0, 2),
        "billed_hours_per_burst": round(b.billed_s_per_burst / 3600.0, 3),
        "first_result_wait_s": round(b.first_result_wait_s, 1),
        # the share of requests that open a burst and so wait for start-up
        "cold_start_share": round(b.bursts / b.requests, 4) if b.requests else 0.0,
    }


def _capacity_reason(w: Workload) -> str | None:
    busy = w.images_per_month * w.seconds_per_image
    if busy >= MONTH_S:
        return (
            f"one instance cannot keep up: {busy / 3600:.0f} busy hours a month "
            f"> {HOURS_PER_MONTH:.0f} (this option is priced for one instance)"
        )
    return None


# --- the options -----------------------------------------------------------------------


def realtime_always_on(w: Workload, prices: PriceTable) -> OptionCost:
    a = w.assumptions
    busy_h = w.images_per_month * w.seconds_per_image / 3600.0
    instances = max(1, math.ceil(busy_h / (HOURS_PER_MONTH * a.max_utilisation)))
    reasons = _realtime_limits(w)
    hours = instances * HOURS_PER_MONTH
    fixed = fixed_storage(w, prices)
    logs = cloudwatch_logs(w, prices, hours)
    supporting = {**fixed, "cloudwatch_logs": logs, "data_processed": data_processed(w, prices)}
    return OptionCost(
        option="realtime_always_on",
        feasible=not reasons,
        reasons=reasons,
        compute_usd=hours * instance_price(prices, "realtime", w.instance_type),
        supporting_usd=supporting,
        # At zero volume the instance still runs, so its hourly logs are fixed too.
        fixed_usd=sum(fixed.values()) + cloudwatch_logs(w.with_volume(0), prices, hours),
        details={
            "instances": instances,
            "billed_hours": round(hours, 2),
            "utilisation": round(busy_h / hours, 4),
        },
        caveats=_realtime_headroom(w),
        first_result_s=w.seconds_per_image,
        first_result_basis="the work (an instance is always up)",
    )


def _realtime_limits(w: Workload) -> list[str]:
    reasons = []
    if w.seconds_per_image > REALTIME_MAX_CALL_S:
        reasons.append(
            f"a call takes {w.seconds_per_image:g} s, over the real-time limit of "
            f"{REALTIME_MAX_CALL_S:g} s (use asynchronous inference)"
        )
    if max(w.assumptions.request_mb, w.assumptions.response_mb) > REALTIME_MAX_PAYLOAD_MB:
        reasons.append(f"payload over the real-time limit of {REALTIME_MAX_PAYLOAD_MB:g} MB")
    return reasons


def _realtime_headroom(w: Workload) -> list[str]:
    if REALTIME_MAX_CALL_S * 0.8 < w.seconds_per_image <= REALTIME_MAX_CALL_S:
        return [
            f"{w.seconds_per_image:g} s per call leaves little headroom under the "
            f"{REALTIME_MAX_CALL_S:g} s real-time limit; queueing pushes calls over it"
        ]
    return []


def async_scale_to_zero(w: Workload, prices: PriceTable) -> OptionCost:
    """Async with the scale-in `gen3d deploy` sets up: to zero after `idle_minutes` of
    empty backlog (scaling_params.AsyncScaling.idle_tail_s)."""
    return _async_option(w, prices, w.scaling.idle_tail_s, ASYNC_SCALING_ALARMS)


def async_with_target_tracking_tail(w: Workload, prices: PriceTable) -> OptionCost:
    """The same endpoint if target tracking's own scale-in removed the last instance (15
    one-minute datapoints below target): what deploy set up before the empty-backlog
    alarm, kept to show what that alarm saves."""
    return _async_option(w, prices, w.scaling.target_tracking_tail_s, IC_SCALING_ALARMS)


def _async_option(w: Workload, prices: PriceTable, tail_s: float, alarm_count: int) -> OptionCost:
    s, a = w.scaling, w.assumptions
    reasons = []
    if w.seconds_per_image > ASYNC_MAX_CALL_S:
        reasons.append(f"a call takes over the asynchronous limit of {ASYNC_MAX_CALL_S:g} s")
    capacity = _capacity_reason(w)
    if capacity:
        reasons.append(capacity)
    fixed = {**fixed_storage(w, prices), "cloudwatch_alarms": alarms(prices, alarm_count)}
    if reasons:
        return OptionCost("async_scale_to_zero", False, reasons, fixed_usd=sum(fixed.values()))
    b = _bursts(w, s.scale_out_trigger_s, a.startup_s, tail_s)
    hours = b.billed_s / 3600.0
    n = w.images_per_month
    supporting = {
        **fixed,
        "s3_payloads": s3_payloads(w, prices),
        "cloudwatch_logs": cloudwatch_logs(w, prices, hours),
        "sns_notifications": sns_notifications(prices, n),
        "lambda_invoker": lambda_invocations(w, prices, n),
        "data_processed": data_processed(w, prices),
    }
    return OptionCost(
        option="async_scale_to_zero",
        feasible=True,
        compute_usd=hours * instance_price(prices, "async", w.instance_type),
        supporting_usd=supporting,
        fixed_usd=sum(fixed.values()),
        details={
            **_burst_details(b),
            "processing_hours": round(n * w.seconds_per_image / 3600.0, 2),
            "idle_tail_s": tail_s,
            "scale_out_trigger_s": s.scale_out_trigger_s,
            "startup_s": a.startup_s,
        },
        caveats=[
            "every burst pays instance start-up and the scale-in idle tail; the first "
            "result of a burst waits trigger + start-up + processing"
        ],
        first_result_s=b.first_result_wait_s,
        first_result_basis="from zero: scale-out alarm + start-up + the work",
    )


def realtime_ic_scale_to_zero(w: Workload, prices: PriceTable) -> OptionCost:
    s, a = w.scaling, w.assumptions
    reasons = _realtime_limits(w)
    capacity = _capacity_reason(w)
    if capacity:
        reasons.append(capacity)
    fixed = {**fixed_storage(w, prices), "cloudwatch_alarms": alarms(prices, IC_SCALING_ALARMS)}
    if reasons:
        return OptionCost(
            "realtime_ic_scale_to_zero", False, reasons, fixed_usd=sum(fixed.values())
        )
    # Components keep target tracking's scale-in: with no queue, a faster one would turn
    # more requests into failed calls (docs/deploy.md, the races).
    b = _bursts(w, s.scale_out_trigger_s, a.startup_s, s.target_tracking_tail_s)
    hours = b.billed_s / 3600.0
    up_s = s.scale_out_trigger_s + a.startup_s
    if w.arrivals == "daily-batch":
        failed = w.images_per_month  # the whole batch lands before capacity exists
    else:
        failed = b.bursts * (1.0 + w.images_per_month / MONTH_S * up_s)
    supporting = {
        **fixed,
        "cloudwatch_logs": cloudwatch_logs(w, prices, hours),
        "data_processed": data_processed(w, prices),
    }
    return OptionCost(
        option="realtime_ic_scale_to_zero",
        feasible=True,
        compute_usd=hours * instance_price(prices, "realtime", w.instance_type),
        supporting_usd=supporting,
        fixed_usd=sum(fixed.values()),
        details={**_burst_details(b), "failed_requests_per_month": round(failed, 1)},
        caveats=[
            "requests FAIL while capacity comes up (no queue in real-time): about "
            f"{failed:.0f} failed calls a month that clients must retry for up to "
            f"{up_s / 60:.0f} min",
            *_realtime_headroom(w),
        ],
        first_result_s=b.first_result_wait_s,
        first_result_basis="from zero: calls fail until scale-out alarm + start-up, then the work",
    )


def serverless(w: Workload, prices: PriceTable) -> OptionCost:
    p, a = w.profile, w.assumptions
    reasons = []
    if p.needs_gpu:
        reasons.append(f"backend {w.backend} needs a GPU; serverless endpoints have none")
    if p.memory_gb > SERVERLESS_MAX_MEMORY_GB:
        reasons.append(
            f"backend {w.backend} needs about {p.memory_gb:g} GB of memory; serverless "
            f"allows at most {SERVERLESS_MAX_MEMORY_GB:g} GB"
        )
    if w.seconds_per_image > SERVERLESS_MAX_CALL_S:
        reasons.append(
            f"a call takes {w.seconds_per_image:g} s; serverless allows at most "
            f"{SERVERLESS_MAX_CALL_S:g} s"
        )
    if max(a.request_mb, a.response_mb) > SERVERLESS_MAX_PAYLOAD_MB:
        reasons.append(f"payload over the serverless limit of {SERVERLESS_MAX_PAYLOAD_MB:g} MB")
    if p.image_gb > SERVERLESS_MAX_IMAGE_GB:
        reasons.append(f"image over the serverless limit of {SERVERLESS_MAX_IMAGE_GB:g} GB")
    fixed = fixed_storage(w, prices)
    if reasons:
        return OptionCost("serverless", False, reasons, fixed_usd=sum(fixed.values()))
    memory_gb = float(min(SERVERLESS_MAX_MEMORY_GB, max(1, math.ceil(p.memory_gb))))
    gb_s = w.images_per_month * w.seconds_per_image * memory_gb
    supporting = {
        **fixed,
        "cloudwatch_logs": cloudwatch_logs(w, prices, 0.0),
        "data_processed": data_processed(w, prices),
    }
    return OptionCost(
        option="serverless",
        feasible=True,
        compute_usd=gb_s * prices.value("sagemaker.serverless.gb_second"),
        supporting_usd=supporting,
        fixed_usd=sum(fixed.values()),
        details={"memory_gb": memory_gb, "gb_seconds": round(gb_s, 1)},
        caveats=[
            "serverless has cold starts: after idle time the container and model load "
            "again before the call runs (not measured here)"
        ],
        first_result_s=w.seconds_per_image,
        first_result_basis="the work, plus a cold start after idle time (not measured)",
    )


def start_stop_on_demand(w: Workload, prices: PriceTable) -> OptionCost:
    a = w.assumptions
    reasons = _realtime_limits(w)
    capacity = _capacity_reason(w)
    if capacity:
        reasons.append(capacity)
    ticks = MONTH_S / a.stop_check_s  # the idle checker runs whatever the volume
    fixed = {
        **fixed_storage(w, prices),
        "lambda_idle_checker": lambda_invocations(w, prices, ticks),
    }
    if reasons:
        return OptionCost("start_stop_on_demand", False, reasons, fixed_usd=sum(fixed.values()))
    tail = a.stop_idle_s + a.stop_check_s / 2.0  # idle limit + half a check on average
    b = _bursts(w, 0.0, a.startup_s, tail)
    hours = b.billed_s / 3600.0
    supporting = {
        **fixed,
        "cloudwatch_logs": cloudwatch_logs(w, prices, hours),
        "data_processed": data_processed(w, prices),
    }
    return OptionCost(
        option="start_stop_on_demand",
        feasible=True,
        compute_usd=hours * instance_price(prices, "realtime", w.instance_type),
        supporting_usd=supporting,
        fixed_usd=sum(fixed.values()),
        details={**_burst_details(b), "idle_tail_s": tail},
        caveats=[
            "the caller must hold requests while the endpoint is created (minutes) and "
            "needs CreateEndpoint/DeleteEndpoint rights"
        ],
        first_result_s=b.first_result_wait_s,
        first_result_basis="from zero: endpoint creation (start-up) + the work",
    )


def batch_transform_daily(w: Workload, prices: PriceTable) -> OptionCost:
    a = w.assumptions
    n = w.images_per_month
    jobs = min(DAYS_PER_MONTH, n) if n > 0 else 0.0
    per_job = n / jobs if jobs else 0.0
    job_s = a.batch_job_startup_s + per_job * w.seconds_per_image / a.batch_concurrency
    reasons = []
    if job_s > 86400:
        reasons.append(f"a daily job would take {job_s / 3600:.1f} h, longer than the day")
    fixed = fixed_storage(w, prices)
    hours = jobs * job_s / 3600.0
    supporting = {
        **fixed,
        "s3_payloads": s3_payloads(w, prices),
        "cloudwatch_logs": cloudwatch_logs(w, prices, hours),
        "lambda_job_starter": lambda_invocations(w, prices, jobs),
    }
    caveats = [
        "results arrive with the next daily job (up to a day late)"
        if w.arrivals == "poisson"
        else "results arrive when the day's job finishes"
    ]
    return OptionCost(
        option="batch_transform_daily",
        feasible=not reasons,
        reasons=reasons,
        compute_usd=hours * instance_price(prices, "batch", w.instance_type),
        supporting_usd=supporting,
        fixed_usd=sum(fixed.values()),
        details={
            "jobs_per_month": round(jobs, 2),
            "images_per_job": round(per_job, 2),
            "billed_hours": round(hours, 2),
            "job_startup_s": a.batch_job_startup_s,
        },
        caveats=caveats,
        # A request waits for the next daily job (up to a day) and then for that job.
        first_result_s=(DAY_S if w.arrivals == "poisson" else 0.0) + job_s,
        first_result_basis=(
            "up to a day for the next job + the job"
            if w.arrivals == "poisson"
            else "the day's job (requests arrive with it)"
        ),
    )


OPTIONS = (
    realtime_always_on,
    async_scale_to_zero,
    realtime_ic_scale_to_zero,
    serverless,
    start_stop_on_demand,
    batch_transform_daily,
)


def gpu_fit_caveat(w: Workload) -> str | None:
    """What the instance table (the one `gen3d deploy` checks) says about running the
    backend on the priced instance's GPU; None when it fits as it is."""
    fit = backend_fit(w.backend, w.instance_type)
    if fit.refusal:
        return f"gen3d deploy refuses this: {fit.refusal}"
    if fit.offload:
        return (
            f"{w.backend} fits {w.instance_type}'s 24 GB GPU only with stage offload "
            "(deploy sets GEN3D_STAGE_OFFLOAD=1); seconds per image should be measured so"
        )
    return None


def estimate(w: Workload, prices: PriceTable) -> list[OptionCost]:
    options = [option(w, prices) for option in OPTIONS]
    caveat = gpu_fit_caveat(w)
    if caveat:
        for cost in options:
            if cost.option != "serverless":  # no GPU there at all; its reasons say so
                cost.caveats.append(caveat)
    return options


def break_even(w: Workload, prices: PriceTable) -> float | None:
    """Images per month above which always-on is cheaper than async scale-to-zero
    (totals, fixed costs included), solved numerically. None when scale-to-zero stays
    cheaper up to one instance's capacity."""

    def gap(n: float) -> float:
        v = w.with_volume(n)
        on = realtime_always_on(v, prices).compute_usd or 0.0
        on += sum(realtime_always_on(v, prices).supporting_usd.values())
        off = async_scale_to_zero(v, prices)
        return (off.compute_usd or 0.0) + sum(off.supporting_usd.values()) - on

    # Up to just below one instance's capacity, where the single-instance model holds.
    high = 0.999 * MONTH_S / w.seconds_per_image
    high = min(high, HOURS_PER_MONTH * w.assumptions.max_utilisation * 3600 / w.seconds_per_image)
    if gap(0.0) >= 0:
        return 0.0
    if gap(high) < 0:
        return None
    return float(brentq(gap, 0.0, high, xtol=1e-6, rtol=1e-10))
