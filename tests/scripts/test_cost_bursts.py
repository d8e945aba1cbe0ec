"""The closed-form burst model against a seeded simulation of the same scale-in rule.

Stated tolerance: billed instance-hours within 2 % and bursts within 3 % for 10 to
10 000 requests a month (simulated over enough months for ~40 000 arrivals, seed 7).
"""

from __future__ import annotations

import math

import pytest

from gen3d.aws.scaling_params import ASYNC_SCALING
from gen3d.cost.bursts import daily_batch_bursts, poisson_bursts
from gen3d.cost.model import MONTH_S
from gen3d.cost.simulation import simulate_scale_to_zero

TRIGGER = ASYNC_SCALING.scale_out_trigger_s
TAIL = ASYNC_SCALING.idle_tail_s
STARTUP = 600.0


@pytest.mark.parametrize("service_s", [60.0, 5.0])
@pytest.mark.parametrize("volume", [10, 100, 1_000, 10_000])
def test_closed_form_matches_seeded_simulation(volume: int, service_s: float) -> None:
    closed = poisson_bursts(volume, service_s, TRIGGER, STARTUP, TAIL, MONTH_S)
    months = max(4, 40_000 // volume)
    sim = simulate_scale_to_zero(volume, service_s, TRIGGER, STARTUP, TAIL, MONTH_S, months, seed=7)
    assert closed.billed_s == pytest.approx(sim.billed_s_per_month, rel=0.02)
    assert closed.bursts == pytest.approx(sim.bursts_per_month, rel=0.03)
    assert sim.mean_first_result_wait_s == pytest.approx(closed.first_result_wait_s)


def test_simulation_is_reproducible_from_its_seed() -> None:
    one = simulate_scale_to_zero(300, 60, TRIGGER, STARTUP, TAIL, MONTH_S, 10, seed=3)
    two = simulate_scale_to_zero(300, 60, TRIGGER, STARTUP, TAIL, MONTH_S, 10, seed=3)
    other = simulate_scale_to_zero(300, 60, TRIGGER, STARTUP, TAIL, MONTH_S, 10, seed=4)
    assert one == two
    assert one != other


def test_sparse_requests_each_pay_start_up_and_tail() -> None:
    b = poisson_bursts(1, 60, TRIGGER, STARTUP, TAIL, MONTH_S)
    # One request a month almost never shares a burst.
    assert b.bursts == pytest.approx(1.0, rel=1e-3)
    assert b.billed_s_per_burst == pytest.approx(STARTUP + 60 + TAIL, rel=1e-3)
    assert b.first_result_wait_s == TRIGGER + STARTUP + 60


def test_no_requests_no_bursts() -> None:
    b = poisson_bursts(0, 60, TRIGGER, STARTUP, TAIL, MONTH_S)
    assert (b.bursts, b.billed_s) == (0.0, 0.0)


def test_one_instance_past_capacity_is_refused() -> None:
    with pytest.raises(ValueError, match="utilisation"):
        poisson_bursts(MONTH_S / 60 * 1.01, 60, TRIGGER, STARTUP, TAIL, MONTH_S)


def test_daily_batches_are_one_burst_a_day() -> None:
    days = 730 / 24
    b = daily_batch_bursts(3000, 60, TRIGGER, STARTUP, TAIL, days)
    assert b.bursts == pytest.approx(days)
    assert b.billed_s == pytest.approx(days * (STARTUP + TAIL) + 3000 * 60)
    few = daily_batch_bursts(5, 60, TRIGGER, STARTUP, TAIL, days)
    assert few.bursts == 5 and math.isclose(few.requests_per_burst, 1.0)


def test_traffic_that_never_lets_the_instance_scale_in_bills_the_whole_month() -> None:
    # 20M requests/month is ~7.7 per second: a gap of 900 s essentially never happens
    # (lambda * tail ~ 6900, far past a float's exp range).
    est = poisson_bursts(20_000_000, 0.04, TRIGGER, STARTUP, TAIL, MONTH_S)
    assert math.isfinite(est.billed_s) and est.bursts < 1e-6
    assert est.billed_s == pytest.approx(MONTH_S, rel=0.01)
