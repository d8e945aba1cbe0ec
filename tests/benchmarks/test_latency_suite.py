"""The one-client latency suite on a real server (tiny bounds)."""

import json
from pathlib import Path

import pytest

from gen3d.benchmarks.latency import LatencyConfig, run_latency_suite


@pytest.mark.slow  # starts a server and sends it a sequence
def test_latency_suite_records_ready_time_latency_and_rss(tmp_path: Path) -> None:
    path = run_latency_suite(LatencyConfig(image_size=64, requests=3), tmp_path)
    doc = json.loads(path.read_text())
    assert doc["suite"] == "latency" and path.parent.name == "cpu"
    (result,) = doc["results"]
    assert 0 < result["start_to_ready_s"] < 60
    assert result["latency_s"]["n"] == 3 and result["latency_s"]["median"] > 0
    assert result["glb_bytes"] > 1000
    rss = list(result["peak_rss_mb"].values())
    assert len(rss) >= 2 and all(v > 5 for v in rss)  # gunicorn master and its workers
