"""Closed-form burst model for one instance that scales to zero.

Rule (the same one scripts/cost/simulation.py plays out event by event): the first
request with no instance starts a burst; capacity is requested `trigger_s` later and is
ready `startup_s` after that (billed from launch); requests are served one at a time,
`service_s` each; the instance is removed `tail_s` after its last completion unless
another request arrives first. Billed time per burst = launch to removal.

For Poisson arrivals at rate lam, a burst's first request is followed by another within
W1 = trigger + startup + service + tail with probability p1 = 1 - exp(-lam W1); each
later request is followed within W = service + tail with probability q = 1 - exp(-lam W).
So a burst holds m = 1 + p1 / (1 - q) requests on average and bursts = N / m. Each joining
request moves the last completion later by max(gap - c, 0) + service for the first
(c = trigger + startup + service) and by about max(gap, service) after that, with gap
exponential and conditioned on being inside its window. Queueing beyond the first
request is ignored, which is what the seeded simulation checks.
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


def _excess_given_below(lam: float, start: float, end: float) -> float:
    """E[max(X - start, 0); X < end] for X ~ Exp(lam), as an unconditioned integral."""
    if end <= start:
        return 0.0
    span = end - start
    return math.exp(-lam * start) * (-math.expm1(-lam * span) / lam - span * math.exp(-lam * span))


def poisson_bursts(
    requests_per_month: float,
    service_s: float,
    trigger_s: float,
    startup_s: float,
    tail_s: float,
    month_s: float,
) -> BurstEstimate:
    first_wait = trigger_s + startup_s + service_s
    if requests_per_month <= 0:
        return BurstEstimate(0.0, 0.0, 0.0, 0.0, first_wait, 0.0)
    lam = requests_per_month / month_s
    w1 = trigger_s + startup_s + service_s + tail_s
    w = service_s + tail_s
    p1 = -math.expm1(-lam * w1)
    q = -math.expm1(-lam * w)
    stay = math.exp(-lam * w)  # 1 - q, the chance a later request ends its burst
    per_burst = 1.0 + p1 / stay
    # Extension of the busy period by the second request (window W1) and later ones (W).
    c = trigger_s + startup_s + service_s
    ext_first = _excess_given_below(lam, c, w1) / p1 + service_s if p1 > 0 else 0.0
    ext_later = service_s + (_excess_given_below(lam, service_s, w) / q if q > 0 else 0.0)
    billed_per_burst = (
        startup_s + service_s + tail_s + p1 * ext_first + p1 * (q / stay) * ext_later
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
