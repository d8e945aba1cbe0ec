"""The peers suite's interleaved slices: which server is measured when, and how one
server's windows pool into one level's figures (checked against numpy's percentiles)."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from gen3d.benchmarks.loadgen import Completion, LoadWindow, summarize_windows
from gen3d.benchmarks.peers import PeersConfig, measure_in_turn, slice_sequence


def test_slices_alternate_the_order_so_every_server_sits_at_the_same_mean_position() -> None:
    order = ["ours", "litserve", "byoc"]
    sequence = slice_sequence(order, 4)
    assert sequence == [
        *["ours", "litserve", "byoc"],
        *["byoc", "litserve", "ours"],
        *["ours", "litserve", "byoc"],
        *["byoc", "litserve", "ours"],
    ]
    # a drift linear in time costs each server the same: equal mean positions
    positions = {name: [i for i, n in enumerate(sequence) if n == name] for name in order}
    assert len({statistics.mean(p) for p in positions.values()}) == 1
    assert slice_sequence(order, 1) == order
    assert slice_sequence([], 3) == []


def test_more_than_one_slice_needs_a_way_to_pool_them() -> None:
    config = PeersConfig(backend="silhouette")
    with pytest.raises(ValueError, match="pool"):
        measure_in_turn({}, {}, 0, config, lambda name, target: None, slices=2)
    with pytest.raises(ValueError):
        measure_in_turn({}, {}, 0, config, lambda name, target: None, slices=0)


def _window(start: float, end: float, latencies_ms: list[float], refused: int = 0) -> LoadWindow:
    records = [
        Completion(start + 0.1 * (i + 1) - ms / 1000, start + 0.1 * (i + 1), 200)
        for i, ms in enumerate(latencies_ms)
    ]
    records += [Completion(end - 0.02, end - 0.01, 503) for _ in range(refused)]
    return LoadWindow(4, start, end, records, [(1.5, 200), (2.5, 200)])


def test_windows_pool_into_one_level_all_answers_over_all_the_time() -> None:
    first = _window(100.0, 101.0, [10.0, 20.0], refused=1)
    second = _window(250.0, 253.0, [30.0, 40.0, 50.0, 60.0, 70.0, 80.0])
    pooled = summarize_windows([first, second])
    assert pooled["slices"] == 2
    assert pooled["window_s"] == pytest.approx(4.0)
    assert pooled["ok"] == 8 and pooled["completed"] == 9
    assert pooled["errors"] == {"503": 1}
    assert pooled["throughput_per_s"] == pytest.approx(8 / 4.0)  # not the mean of 2 and 2
    latencies = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0]
    assert pooled["latency_ms"]["median"] == pytest.approx(np.percentile(latencies, 50))
    assert pooled["latency_ms"]["p99"] == pytest.approx(np.percentile(latencies, 99))
    # one whole second in the first window, three in the second: four rates
    assert pooled["throughput_windows_per_s"]["n"] == 4
    assert pooled["ping_failures"] == 0 and pooled["ping_ms"]["n"] == 4
    alone = summarize_windows([second])
    assert "slices" not in alone
    assert alone["throughput_per_s"] == pytest.approx(6 / 3.0)
    with pytest.raises(ValueError):
        summarize_windows([])
