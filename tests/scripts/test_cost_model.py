"""The cost model: seed arithmetic, monotonicity, zero volume, infeasibility, break-even,
and that every price comes from the table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gen3d.cost.model import (
    HOURS_PER_MONTH,
    async_scale_to_zero,
    break_even,
    estimate,
    realtime_always_on,
    serverless,
)
from gen3d.cost.prices import DEFAULT_PRICES, PriceError, load_prices
from gen3d.cost.workload import Workload

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
    assert (
        o.details["idle_tail_s"]
        == s.target_tracking_scale_in_datapoints * s.target_tracking_period_s
    )
    assert o.details["first_result_wait_s"] == s.scale_out_trigger_s + w.assumptions.startup_s + 60
    # Billed time is far more than processing: every burst pays start-up and the tail.
    assert o.details["billed_hours"] > 10 * o.details["processing_hours"]


@pytest.mark.parametrize("instance", INSTANCES)
def test_break_even_is_where_always_on_becomes_cheaper(instance: str) -> None:
    prices = load_prices()
    w = Workload(0, 60, instance_type=instance)
    n = break_even(w, prices)
    assert n is not None and 1000 < n < 30_000

    def gap(volume: float) -> float:
        v = w.with_volume(volume)
        return total(async_scale_to_zero(v, prices)) - total(realtime_always_on(v, prices))

    assert gap(n * 0.99) < 0 < gap(n * 1.01)
    assert gap(n) == pytest.approx(0, abs=1e-6)


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
