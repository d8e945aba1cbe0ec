"""Closed-form burst model for one instance that scales to zero.

Rule (the same one scripts/cost/simulation.py plays out event by event): the first
request with no instance starts a burst; capacity is requested `trigger_s` later and is
ready `startup_s` after that (billed from launch); requests are served one at a time,
`service_s` each, first come first served; the instance is removed `tail_s` after its
last completion unless another request arrives first. Billed time = launch to removal.

Poisson arrivals at rate lam, utilisation rho = lam * service < 1. A burst is:
  - a first busy period: at ready the queue holds 1 + K requests, K ~ Poisson(lam
    (trigger + startup)); an M/D/1 busy period that starts with n requests lasts
    n * service / (1 - rho) on average and serves n / (1 - rho) requests;
  - then cycles of (idle gap, busy period): after each busy period the next request
    comes within the tail with probability p = 1 - exp(-lam tail) (memoryless), so the
    expected number of cycles is p / (1 - p) = exp(lam tail) - 1; the gap averages
    E[X | X < tail] and each busy period started by one request lasts service / (1 - rho);
  - then the tail.
Requests per burst m = (1 + lam (trigger + startup) + exp(lam tail) - 1) / (1 - rho), and
bursts = N / m. The seeded simulation checks this to the tolerance its test states.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class BurstEstimate:
    requests: float  # per month
    bursts: float  # per month
    billed_s: float  # instance-seconds per month
    requests_per_burst: float
    first_result_wait_s: float  # first request of a burst: trigger + startup + service
    billed_s_per_burst: float


def _mean_gap_below(lam: float, limit: float) -> float:
    """E[X | X < limit] for X ~ Exp(lam)."""
    inside = -math.expm1(-lam * limit)
    if inside <= 0.0:
        return 0.0
    return 1.0 / lam - limit * math.exp(-lam * limit) / inside


def poisson_bursts(
    requests_per_month: float,
    service_s: float,
    trigger_s: float,
    startup_s: float,
    tail_s: float,
    month_s: float,
) -> BurstEstimate:
    """Long-run monthly averages for one instance. Raises ValueError when one instance
    cannot keep up (utilisation >= 1): the single-instance model does not apply."""
    first_wait = trigger_s + startup_s + service_s
    if requests_per_month <= 0:
        return BurstEstimate(0.0, 0.0, 0.0, 0.0, first_wait, 0.0)
    lam = requests_per_month / month_s
    rho = lam * service_s
    if rho >= 1.0:
        raise ValueError(
            f"one instance cannot serve {requests_per_month:g} requests/month at "
            f"{service_s:g} s each (utilisation {rho:.2f} >= 1)"
        )
    queued_at_ready = 1.0 + lam * (trigger_s + startup_s)
    # Beyond e^700 (a float's range) a scale-in essentially never happens; clamping keeps
    # the limits (bursts -> 0, billed -> the whole month) finite instead of overflowing.
    cycles = math.expm1(min(lam * tail_s, 700.0))
    busy_per_request = service_s / (1.0 - rho)
    per_burst = (queued_at_ready + cycles) / (1.0 - rho)
    billed_per_burst = (
        startup_s
        + queued_at_ready * busy_per_request
        + cycles * (_mean_gap_below(lam, tail_s) + busy_per_request)
        + tail_s
    )
    bursts = requests_per_month / per_burst
    return BurstEstimate(
        requests=requests_per_month,
        bursts=bursts,
        billed_s=bursts * billed_per_burst,
        requests_per_burst=per_burst,
        first_result_wait_s=first_wait,
        billed_s_per_burst=billed_per_burst,
    )


def daily_batch_bursts(
    requests_per_month: float,
    service_s: float,
    trigger_s: float,
    startup_s: float,
    tail_s: float,
    days_per_month: float,
) -> BurstEstimate:
    """All of a day's requests arrive together: one burst per day with work (a day's
    work is assumed to finish well inside the day)."""
    first_wait = trigger_s + startup_s + service_s
    if requests_per_month <= 0:
        return BurstEstimate(0.0, 0.0, 0.0, 0.0, first_wait, 0.0)
    bursts = min(days_per_month, requests_per_month)
    per_burst = requests_per_month / bursts
    billed_per_burst = startup_s + per_burst * service_s + tail_s
    return BurstEstimate(
        requests=requests_per_month,
        bursts=bursts,
        billed_s=bursts * billed_per_burst,
        requests_per_burst=per_burst,
        first_result_wait_s=first_wait,
        billed_s_per_burst=billed_per_burst,
    )
