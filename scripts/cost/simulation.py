"""A seeded event simulation of one scale-to-zero instance, to check the closed form.

It plays out the rule in scripts/cost/bursts.py request by request, queueing included:
arrivals are a Poisson process (uniform times for a Poisson count), served first come
first served by one instance that launches `trigger_s` after the first request finds no
capacity, is ready `startup_s` later, and is removed `tail_s` after its last completion
unless another request arrives before then.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SimulationResult:
    months: int
    requests_per_month: float
    bursts_per_month: float
    billed_s_per_month: float
    mean_first_result_wait_s: float
    mean_wait_s: float  # arrival to result, every request


def simulate_scale_to_zero(
    requests_per_month: float,
    service_s: float,
    trigger_s: float,
    startup_s: float,
    tail_s: float,
    month_s: float,
    months: int,
    seed: int,
) -> SimulationResult:
    rng = np.random.default_rng(seed)
    horizon = month_s * months
    count = int(rng.poisson(requests_per_month * months))
    arrivals = np.sort(rng.uniform(0.0, horizon, size=count))

    bursts = 0
    billed = 0.0
    first_waits: list[float] = []
    total_wait = 0.0
    i = 0
    while i < count:
        first = float(arrivals[i])
        launch = first + trigger_s
        free_at = launch + startup_s
        bursts += 1
        done = 0.0
        first_in_burst = True
        while i < count:
            arrival = float(arrivals[i])
            if not first_in_burst and arrival > done + tail_s:
                break  # the instance was removed before this request came
            done = max(arrival, free_at) + service_s
            free_at = done
            total_wait += done - arrival
            if first_in_burst:
                first_waits.append(done - arrival)
                first_in_burst = False
            i += 1
        billed += done + tail_s - launch

    return SimulationResult(
        months=months,
        requests_per_month=count / months,
        bursts_per_month=bursts / months,
        billed_s_per_month=billed / months,
        mean_first_result_wait_s=float(np.mean(first_waits)) if first_waits else 0.0,
        mean_wait_s=total_wait / count if count else 0.0,
    )
