"""Summary statistics of repeated measurements.

Quantiles are numpy's (linear interpolation between order statistics, "type 7"), so a
p99 of 100 samples is not simply the largest one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0 <= q <= 1) by linear interpolation; NaN for no values."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    if len(values) == 0:
        return math.nan
    return float(np.quantile(np.asarray(values, dtype=np.float64), q))


def summarize(values: Sequence[float]) -> dict[str, float | int]:
    """Median and spread: n, mean, min, p25, median, p75, p90, p99, max, iqr, rel_iqr."""
    data = [float(v) for v in values]
    if not data:
        return {"n": 0}
    median = quantile(data, 0.5)
    p25, p75 = quantile(data, 0.25), quantile(data, 0.75)
    return {
        "n": len(data),
        "mean": sum(data) / len(data),
        "min": min(data),
        "p25": p25,
        "median": median,
        "p75": p75,
        "p90": quantile(data, 0.90),
        "p99": quantile(data, 0.99),
        "max": max(data),
        "iqr": p75 - p25,
        # spread relative to the median: how repeatable the measurement was
        "rel_iqr": (p75 - p25) / median if median else math.nan,
    }


def percentile_curve(values: Sequence[float], points: int = 100) -> list[float]:
    """Quantiles at 0, 1/(points-1), ..., 1: a compact latency distribution for plots."""
    if not values:
        return []
    return [quantile(values, i / (points - 1)) for i in range(points)]


def window_rates(
    completion_times: Sequence[float], start: float, end: float, window_s: float = 1.0
) -> list[float]:
    """Completions per second in consecutive whole windows of [start, end).

    The spread of these rates is the spread of a throughput measurement taken from one
    long run; a trailing partial window is dropped (it would bias the rate low).
    """
    if window_s <= 0:
        raise ValueError("window_s must be positive")
    count = int((end - start) // window_s)
    bins = [0] * count
    for t in completion_times:
        index = int((t - start) // window_s)
        if 0 <= index < count:
            bins[index] += 1
    return [b / window_s for b in bins]
