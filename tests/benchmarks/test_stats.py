"""Statistics used by every suite, checked against numpy's quantile (an independent
implementation) and against hand-computed values."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

from gen3d.benchmarks.stats import percentile_curve, quantile, summarize, window_rates


@pytest.mark.parametrize("n", [1, 2, 3, 10, 101])
@pytest.mark.parametrize("q", [0.0, 0.25, 0.5, 0.9, 0.99, 1.0])
def test_quantile_matches_numpy_linear(n: int, q: float) -> None:
    rng = random.Random(n)
    values = [rng.expovariate(1.0) for _ in range(n)]
    assert quantile(values, q) == pytest.approx(float(np.quantile(values, q)), rel=1e-12)


def test_quantile_interpolates_between_order_statistics() -> None:
    assert quantile([10, 20, 30, 40], 0.5) == 25.0
    assert quantile([40, 10, 30, 20], 0.25) == 17.5  # unsorted input
    assert math.isnan(quantile([], 0.5))
    with pytest.raises(ValueError):
        quantile([1.0], 1.5)


def test_summarize_median_and_spread() -> None:
    s = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert s["n"] == 5
    assert s["median"] == 3.0
    assert (s["p25"], s["p75"], s["iqr"]) == (2.0, 4.0, 2.0)
    assert s["min"] == 1.0 and s["max"] == 5.0
    assert s["mean"] == 3.0
    assert s["rel_iqr"] == pytest.approx(2 / 3)
    assert summarize([]) == {"n": 0}


def test_percentile_curve_is_monotone_and_spans_min_to_max() -> None:
    values = [random.Random(1).random() for _ in range(50)]
    curve = percentile_curve(values, 11)
    assert len(curve) == 11
    assert curve[0] == min(values) and curve[-1] == max(values)
    assert all(a <= b for a, b in itertools.pairwise(curve))


def test_window_rates_counts_whole_windows_only() -> None:
    # 3 completions in [0,1), 1 in [1,2), the one at 2.5 falls in a partial window
    times = [0.1, 0.5, 0.9, 1.2, 2.5]
    assert window_rates(times, start=0.0, end=2.7, window_s=1.0) == [3.0, 1.0]
    # per second: [0,.5) 1, [.5,1) 2, [1,1.5) 1, then none; 2.5 starts a partial window
    assert window_rates(times, start=0.0, end=2.7, window_s=0.5) == [2.0, 4.0, 2.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        window_rates(times, 0.0, 1.0, 0.0)
