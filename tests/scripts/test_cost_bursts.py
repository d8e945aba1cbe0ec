"""The closed-form burst model against a seeded simulation of the same scale-in rule.

Stated tolerance: billed instance-hours within 2 % and bursts within 3 % for 10 to
10 000 requests a month (simulated over enough months for ~40 000 arrivals, seed 7).
"""

from __future__ import annotations

import math

import pytest

from gen3d.aws.scaling_params import ASYNC_SCALING, AsyncScaling
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


def test_hand_computed_case_with_round_numbers() -> None:
    # 1000 requests in a 1e6 s "month": lambda = 1e-3/s; 100 s each: rho = 0.1.
    # Trigger 60 + start-up 540 = 600 s: 1 + 0.6 = 1.6 requests queued at ready.
    # Tail 1000 ln 2 s: lambda tail = ln 2, so P(next request within the tail) = 1/2 and
    # the expected number of (gap, busy period) cycles is e^(ln 2) - 1 = 1.
    # Requests per burst = (1.6 + 1) / 0.9 = 2.8889; bursts = 1000 / 2.8889 = 346.15.
    # Busy time per request = 100 / 0.9 = 111.11 s. Mean gap below the tail =
    # 1/lambda - tail e^-ln2 / (1 - e^-ln2) = 1000 - 693.147 = 306.853 s.
    # Billed per burst = 540 + 1.6 x 111.111 + 1 x (306.853 + 111.111) + 693.147
    #                  = 540 + 177.778 + 417.964 + 693.147 = 1828.889 s.
    tail = 1000 * math.log(2)
    b = poisson_bursts(1000, 100, 60, 540, tail, 1e6)
    assert b.requests_per_burst == pytest.approx(2.6 / 0.9, rel=1e-12)
    assert b.bursts == pytest.approx(346.1538, rel=1e-6)
    assert b.billed_s_per_burst == pytest.approx(1828.889, rel=1e-6)
    assert b.billed_s == pytest.approx(346.1538 * 1828.889, rel=1e-6)
    assert b.first_result_wait_s == 60 + 540 + 100


def test_hand_computed_seed_month_with_the_3_minute_tail() -> None:
    # The seed: 100 images/month of 60 s, trigger 60 s, start-up 600 s, and deploy's
    # default scale-in: 3 empty minutes + half a minute to the first one = 210 s.
    tail = AsyncScaling(idle_minutes=3).idle_tail_s
    assert tail == 210.0
    # lambda = 100 / 2 628 000 s = 3.80518e-5/s, rho = 60 lambda = 0.00228311
    # queued at ready = 1 + 660 lambda = 1.0251142
    # cycles = e^(210 lambda) - 1 = e^0.00799087 - 1 = 0.00802288
    # requests per burst = (1.0251142 + 0.00802288) / (1 - 0.00228311) = 1.0355012
    # bursts = 100 / 1.0355012 = 96.5716
    # mean gap below 210 s = 26280 - 210 x 0.99204097 / 0.00795903 = 104.860 s
    # busy per request = 60 / 0.99771689 = 60.13730 s
    # billed per burst = 600 + 1.0251142 x 60.13730 + 0.00802288 x (104.860 + 60.13730) + 210
    #                  = 600 + 61.64713 + 1.32375 + 210 = 872.9709 s
    # billed = 96.5716 x 872.9709 = 84 304 s = 23.418 h (target tracking's 900 s: 41.29 h)
    b = poisson_bursts(100, 60, 60, 600, tail, MONTH_S)
    assert b.requests_per_burst == pytest.approx(1.0355012, rel=1e-6)
    assert b.bursts == pytest.approx(96.5716, rel=1e-5)
    assert b.billed_s_per_burst == pytest.approx(872.9709, rel=1e-5)
    assert b.billed_s / 3600 == pytest.approx(23.418, rel=1e-4)
    old = poisson_bursts(100, 60, 60, 600, ASYNC_SCALING.target_tracking_tail_s, MONTH_S)
    assert old.billed_s / 3600 == pytest.approx(41.29, abs=0.005)


@pytest.mark.parametrize("minutes, tail_s", [(1, 90.0), (3, 210.0), (15, 930.0), (60, 3630.0)])
def test_idle_tail_is_the_alarm_minutes_plus_half_a_period(minutes: int, tail_s: float) -> None:
    assert AsyncScaling(idle_minutes=minutes).idle_tail_s == tail_s


@pytest.mark.parametrize("minutes", [0, 61, -3])
def test_idle_minutes_outside_1_to_60_are_refused(minutes: int) -> None:
    with pytest.raises(ValueError, match="idle minutes must be 1-60"):
        AsyncScaling(idle_minutes=minutes)
