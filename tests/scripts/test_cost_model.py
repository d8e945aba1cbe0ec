"""The cost model: seed arithmetic, monotonicity, zero volume, infeasibility, break-even,
and that every price comes from the table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gen3d.aws.scaling_params import ASYNC_SCALING, DEFAULT_IDLE_MINUTES
from gen3d.cost.model import (
    DAY_S,
    HOURS_PER_MONTH,
    OptionCost,
    async_scale_to_zero,
    async_with_target_tracking_tail,
    break_even,
    estimate,
    realtime_always_on,
    realtime_ic_scale_to_zero,
    serverless,
)
from gen3d.cost.prices import DEFAULT_PRICES, PriceError, load_prices
from gen3d.cost.waiting import cheapest_by_tolerance, tolerance_lines
from gen3d.cost.workload import Assumptions, Workload

INSTANCES = ("ml.g4dn.xlarge", "ml.g5.xlarge")
SCALE_TO_ZERO = (
    "async_scale_to_zero",
    "realtime_ic_scale_to_zero",
    "start_stop_on_demand",
    "batch_transform_daily",
)


def total(option) -> float:
    assert option.compute_usd is not None
    return option.compute_usd + sum(option.supporting_usd.values())


def test_seed_arithmetic_always_on_g4dn_is_537_28() -> None:
    w = Workload(100, 60, instance_type="ml.g4dn.xlarge", backend="sam3d")
    on = realtime_always_on(w, load_prices())
    assert on.compute_usd == pytest.approx(537.28, abs=0.01)
    assert on.details["instances"] == 1
    assert HOURS_PER_MONTH == 730


@pytest.mark.parametrize("instance", INSTANCES)
@pytest.mark.parametrize("arrivals", ["poisson", "daily-batch"])
def test_every_option_is_monotonic_in_volume(instance: str, arrivals: str) -> None:
    prices = load_prices()
    base = Workload(0, 60, instance_type=instance, backend="sam3d", arrivals=arrivals)
    volumes = [0.0, *np.geomspace(0.5, 30_000, 60)]
    series: dict[str, list[float]] = {}
    for n in volumes:
        for o in estimate(base.with_volume(float(n)), prices):
            if o.feasible:
                series.setdefault(o.option, []).append(total(o))
    assert set(SCALE_TO_ZERO) | {"realtime_always_on"} <= set(series)
    for option, values in series.items():
        steps = np.diff(values)
        assert (steps >= -1e-9).all(), f"{option} falls with volume at {np.argmin(steps)}"
        assert values[-1] > values[0], f"{option} does not grow with volume"


@pytest.mark.parametrize("backend", ["sam3d", "silhouette"])
def test_scale_to_zero_at_zero_volume_costs_only_fixed_costs(backend: str) -> None:
    w = Workload(0, 60, instance_type="ml.g4dn.xlarge", backend=backend)
    by_option = {o.option: o for o in estimate(w, load_prices())}
    for name in SCALE_TO_ZERO:
        o = by_option[name]
        assert o.compute_usd == 0.0
        assert total(o) == pytest.approx(o.fixed_usd, abs=1e-12)
        assert o.fixed_usd > 0  # the image in ECR is paid for anyway
    # Always-on is the exception: its instance runs at zero volume.
    assert by_option["realtime_always_on"].compute_usd == pytest.approx(537.28, abs=0.01)


@pytest.mark.parametrize("backend", ["sam3d", "proxy"])
def test_serverless_is_infeasible_for_gpu_backends_with_reasons(backend: str) -> None:
    o = serverless(Workload(100, 20, backend=backend), load_prices())
    assert not o.feasible
    assert o.total_usd is None
    assert any("needs a GPU" in r for r in o.reasons)
    assert any("6 GB" in r for r in o.reasons)  # both need more than serverless's 6 GB


def test_serverless_call_over_60_s_is_infeasible_even_on_cpu() -> None:
    prices = load_prices()
    assert serverless(Workload(100, 20, backend="silhouette"), prices).feasible
    slow = serverless(Workload(100, 90, backend="silhouette"), prices)
    assert not slow.feasible
    assert slow.reasons == ["a call takes 90 s; serverless allows at most 60 s"]


def test_serverless_price_is_memory_times_seconds_times_rate() -> None:
    prices = load_prices()
    o = serverless(Workload(1000, 20, backend="silhouette"), prices)
    rate = prices.entries["sagemaker.serverless.gb_second"].value
    assert o.details["memory_gb"] == 2.0
    assert o.compute_usd == pytest.approx(1000 * 20 * 2.0 * rate)


def test_real_time_options_are_infeasible_past_60_s_but_async_is_not() -> None:
    by_option = {o.option: o for o in estimate(Workload(100, 90), load_prices())}
    for name in ("realtime_always_on", "realtime_ic_scale_to_zero", "start_stop_on_demand"):
        assert not by_option[name].feasible
        assert "60 s" in by_option[name].reasons[0]
    assert by_option["async_scale_to_zero"].feasible
    assert by_option["batch_transform_daily"].feasible


def test_inference_components_say_requests_fail_while_capacity_comes_up() -> None:
    by_option = {o.option: o for o in estimate(Workload(100, 60), load_prices())}
    ic = by_option["realtime_ic_scale_to_zero"]
    assert ic.details["failed_requests_per_month"] >= ic.details["bursts_per_month"]
    assert any("FAIL" in c for c in ic.caveats)


def test_async_bursts_follow_the_deploy_scaling_numbers() -> None:
    w = Workload(100, 60)
    o = async_scale_to_zero(w, load_prices())
    s = w.scaling
    # the empty-backlog alarm deploy sets up: idle minutes, plus half a period on average
    assert s.idle_minutes == DEFAULT_IDLE_MINUTES
    assert o.details["idle_tail_s"] == s.idle_minutes * s.idle_alarm_period_s + 30
    assert o.details["first_result_wait_s"] == s.scale_out_trigger_s + w.assumptions.startup_s + 60
    # Billed time is far more than processing: every burst pays start-up and the tail.
    assert o.details["billed_hours"] > 10 * o.details["processing_hours"]


@pytest.mark.parametrize("volume", [10, 100, 1_000, 10_000])
def test_the_empty_backlog_tail_bills_less_than_target_tracking_s(volume: int) -> None:
    prices = load_prices()
    w = Workload(volume, 60, instance_type="ml.g5.xlarge")
    new, old = async_scale_to_zero(w, prices), async_with_target_tracking_tail(w, prices)
    assert new.details["idle_tail_s"] == 210.0 and old.details["idle_tail_s"] == 900.0
    assert new.details["billed_hours"] < old.details["billed_hours"]
    assert total(new) < total(old)
    # the alarm that makes the difference costs one more alarm-month, and no more
    alarm = prices.entries["cloudwatch.alarm_month"].value
    assert new.fixed_usd - old.fixed_usd == pytest.approx(alarm)


def test_seed_month_bills_23_42_hours_with_3_idle_minutes_against_41_29() -> None:
    prices = load_prices()
    w = Workload(100, 60, instance_type="ml.g5.xlarge", assumptions=Assumptions(startup_s=600))
    new, old = async_scale_to_zero(w, prices), async_with_target_tracking_tail(w, prices)
    assert (new.details["billed_hours"], old.details["billed_hours"]) == (23.42, 41.29)
    rate = prices.entries["sagemaker.async.ml.g5.xlarge"].value
    assert old.compute_usd - new.compute_usd == pytest.approx((41.29 - 23.42) * rate, abs=0.02)


def test_more_idle_minutes_bill_more_and_start_fewer_bursts() -> None:
    prices = load_prices()
    costs = [
        async_scale_to_zero(Workload(1000, 60, scaling=ASYNC_SCALING.with_idle_minutes(m)), prices)
        for m in (1, 3, 10, 30, 60)
    ]
    totals = [total(o) for o in costs]
    bursts = [o.details["bursts_per_month"] for o in costs]
    assert totals == sorted(totals) and len(set(totals)) == len(totals)
    assert bursts == sorted(bursts, reverse=True)


def test_inference_components_keep_target_tracking_s_tail() -> None:
    w = Workload(
        100,
        60,
        scaling=ASYNC_SCALING.with_idle_minutes(1),
        assumptions=Assumptions(startup_s=600),
    )
    ic = realtime_ic_scale_to_zero(w, load_prices())
    assert ic.details["billed_hours"] == 41.29  # unchanged by --idle-minutes


def test_first_result_latency_of_each_option() -> None:
    w = Workload(100, 60, instance_type="ml.g5.xlarge")
    by_option = {o.option: o for o in estimate(w, load_prices())}
    assert by_option["realtime_always_on"].first_result_s == 60
    startup = Assumptions().startup_s
    assert by_option["async_scale_to_zero"].first_result_s == 60 + startup + 60
    assert by_option["realtime_ic_scale_to_zero"].first_result_s == 60 + startup + 60
    assert by_option["start_stop_on_demand"].first_result_s == startup + 60
    batch = by_option["batch_transform_daily"]
    images_per_job = batch.details["images_per_job"]
    job_startup = Assumptions().batch_job_startup_s
    assert batch.first_result_s == pytest.approx(
        DAY_S + job_startup + images_per_job * 60, rel=1e-3
    )
    assert by_option["serverless"].first_result_s is None  # infeasible for sam3d
    faster = Workload(100, 60, assumptions=Assumptions(startup_s=120.0))
    assert async_scale_to_zero(faster, load_prices()).first_result_s == 60 + 120 + 60


def _option(name: str, wait_s: float | None, usd: float, feasible: bool = True) -> OptionCost:
    return OptionCost(
        name, feasible, compute_usd=usd, first_result_s=wait_s, first_result_basis="test"
    )


def test_cheapest_by_tolerance_keeps_only_steps_that_get_cheaper() -> None:
    options = [
        _option("realtime_always_on", 60, 500.0),
        _option("start_stop_on_demand", 660, 60.0),
        _option("async_scale_to_zero", 720, 30.0),
        _option("realtime_ic_scale_to_zero", 720, 50.0),  # as slow as async and dearer
        _option("serverless", 30, 1.0, feasible=False),  # cannot work: never an answer
        _option("batch_transform_daily", 87_000, 10.0),
    ]
    steps = cheapest_by_tolerance(options)
    assert [(s.wait_s, s.option.option) for s in steps] == [
        (60, "realtime_always_on"),
        (660, "start_stop_on_demand"),
        (720, "async_scale_to_zero"),
        (87_000, "batch_transform_daily"),
    ]
    lines = tolerance_lines(options, lambda usd: f"${usd:.0f}")
    assert lines[0] == "wait under 60 s: no option answers that fast"
    assert lines[3] == "wait 12.0 min to 24.2 h: Asynchronous, scale to zero ($30/month)"
    assert lines[-1] == "wait 24.2 h or more: Batch transform, one job a day ($10/month)"


def test_a_dearer_slower_option_is_never_the_answer() -> None:
    # Always-on is both fastest and dearest; were batch dearer than async it would vanish.
    options = [
        _option("async_scale_to_zero", 720, 30.0),
        _option("batch_transform_daily", 87_000, 40.0),
    ]
    assert [s.option.option for s in cheapest_by_tolerance(options)] == ["async_scale_to_zero"]


@pytest.mark.parametrize(
    "instance, idle_minutes",
    [("ml.g4dn.xlarge", 3), ("ml.g4dn.xlarge", 15), ("ml.g5.xlarge", 15), ("ml.g5.xlarge", 60)],
)
def test_break_even_is_where_always_on_becomes_cheaper(instance: str, idle_minutes: int) -> None:
    prices = load_prices()
    w = Workload(
        0, 60, instance_type=instance, scaling=ASYNC_SCALING.with_idle_minutes(idle_minutes)
    )
    n = break_even(w, prices)
    assert n is not None and 1000 < n < 31_000

    def gap(volume: float) -> float:
        v = w.with_volume(volume)
        return total(async_scale_to_zero(v, prices)) - total(realtime_always_on(v, prices))

    assert gap(n * 0.99) < 0 < gap(n * 1.01)
    assert gap(n) == pytest.approx(0, abs=1e-6)


def test_no_break_even_when_scale_to_zero_stays_cheaper_up_to_capacity() -> None:
    # ml.g5.xlarge with the default 3 idle minutes: async stays cheaper at every volume
    # one instance can serve (70 % busy at most), so there is no break-even to report.
    prices = load_prices()
    w = Workload(0, 60, instance_type="ml.g5.xlarge")
    assert break_even(w, prices) is None
    top = w.with_volume(HOURS_PER_MONTH * 3600 * 0.7 / 60 * 0.999)
    assert total(async_scale_to_zero(top, prices)) < total(realtime_always_on(top, prices))


def _write_prices(path: Path, factor: float) -> Path:
    data = json.loads(DEFAULT_PRICES.read_text())
    for entry in data["entries"].values():
        entry["value"] *= factor
    path.write_text(json.dumps(data))
    return path


def test_every_dollar_comes_from_the_price_table(tmp_path: Path) -> None:
    """Every cost is linear in prices: doubling every entry of the table doubles every
    figure. A price hard-coded anywhere else would break the ratio."""
    base = load_prices()
    doubled = load_prices(base=_write_prices(tmp_path / "double.json", 2.0))
    for backend in ("sam3d", "silhouette"):
        for n in (0, 10, 1000):
            w = Workload(n, 20 if backend == "silhouette" else 60, backend=backend)
            for one, two in zip(estimate(w, base), estimate(w, doubled), strict=True):
                assert one.feasible == two.feasible
                if one.compute_usd is not None:
                    assert two.compute_usd == pytest.approx(2 * one.compute_usd)
                for key, value in one.supporting_usd.items():
                    assert two.supporting_usd[key] == pytest.approx(2 * value), key
    zeroed = load_prices(base=_write_prices(tmp_path / "zero.json", 0.0))
    for o in estimate(Workload(1000, 60), zeroed):
        assert o.total_usd in (None, 0.0)


def test_override_file_changes_the_result(tmp_path: Path) -> None:
    override = tmp_path / "override.json"
    override.write_text(
        json.dumps({"entries": {"sagemaker.realtime.ml.g4dn.xlarge": {"value": 1.0}}})
    )
    prices = load_prices(override)
    on = realtime_always_on(Workload(100, 60, instance_type="ml.g4dn.xlarge"), prices)
    assert on.compute_usd == pytest.approx(730.0)
    assert prices.entries["sagemaker.realtime.ml.g4dn.xlarge"].source.startswith("override file")
    assert prices.overridden == {"sagemaker.realtime.ml.g4dn.xlarge"}


def test_missing_price_is_an_error_not_a_default() -> None:
    with pytest.raises(PriceError, match=r"ml\.p9\.huge"):
        realtime_always_on(Workload(100, 60, instance_type="ml.p9.huge"), load_prices())


def test_price_entries_carry_their_provenance(tmp_path: Path) -> None:
    prices = load_prices()
    assert prices.entries["sagemaker.realtime.ml.g4dn.xlarge"].value == 0.736
    for p in prices.entries.values():
        assert p.region == "us-east-1" and p.source and p.as_of and p.unit
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"entries": {"new.thing": {"value": 1.0}}}))
    with pytest.raises(PriceError, match="lacks unit"):
        load_prices(bad)
    bad.write_text(json.dumps({"entries": {"ecr.storage_gb_month": {"value": -1}}}))
    with pytest.raises(PriceError, match=">= 0"):
        load_prices(bad)


def test_start_up_pulls_the_measured_sam3d_image() -> None:
    """The start-up estimate is the measured image's pull plus the stated rest, and the
    sizes are the ones docs/image.md reports."""
    from gen3d.cost import workload as wl

    pull = wl.image_pull_s(wl.SAM3D_IMAGE_GB, wl.SAM3D_IMAGE_UNPACKED_GB)
    assert pull == pytest.approx(
        wl.SAM3D_IMAGE_GB / wl.ASSUMED_DOWNLOAD_GB_PER_S
        + wl.SAM3D_IMAGE_UNPACKED_GB / wl.UNPACK_GB_PER_S
    )
    a = wl.Assumptions()
    assert a.startup_s == a.batch_job_startup_s == wl.SAM3D_STARTUP_S
    assert abs(a.startup_s - (wl.NON_PULL_STARTUP_S + pull)) <= 5  # rounded to 10 s
    assert Workload(100, 60).profile.image_gb == wl.SAM3D_IMAGE_GB
    # a bigger image takes longer to pull
    assert wl.image_pull_s(2 * wl.SAM3D_IMAGE_GB, 2 * wl.SAM3D_IMAGE_UNPACKED_GB) > pull
    image_md = (Path(__file__).resolve().parents[2] / "docs" / "image.md").read_text()
    for figure in (
        f"{wl.SAM3D_IMAGE_UNPACKED_GB:g} GB",
        f"{wl.SAM3D_IMAGE_GB:g} GB",
        "12.90 GB",
    ):
        assert figure in image_md, figure
    # the first result of a scale-to-zero burst waits for that start-up
    w = Workload(100, 60, instance_type="ml.g4dn.xlarge", backend="sam3d")
    o = async_scale_to_zero(w, load_prices())
    assert o.details["startup_s"] == wl.SAM3D_STARTUP_S
