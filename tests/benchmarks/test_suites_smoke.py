"""Each suite for real with tiny bounds (real backends, real gunicorn and LitServe on
127.0.0.1), then the report built from what they wrote, read back independently:
JSON by json, the seconds-per-image file by the cost model's own reader, PNGs by PIL."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from gen3d.benchmarks.coldstart import ColdstartConfig, run_coldstart_suite
from gen3d.benchmarks.model import ModelSuiteConfig, run_model_suite
from gen3d.benchmarks.peers import PeersConfig, measuring_order, run_peers_suite
from gen3d.benchmarks.report import build_report
from gen3d.benchmarks.server import ServerSuiteConfig, run_server_suite
from gen3d.cost.bench import read_entries
from gen3d.model_opt.proxy_model import init_proxy_model
from gen3d.serve.backends.proxy.model import config_for

FINGERPRINT_KEYS = {
    "cpu_model",
    "cpu_cores",
    "torch",
    "gpu_name",
    "driver",
    "cuda",
    "load_average",
    "git_commit",
}

pytestmark = [pytest.mark.slow, pytest.mark.heavy]  # real benchmark runs, about a minute


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    out = tmp_path_factory.mktemp("bench-results")
    # model directories of our own, so the tests never touch ~/.cache
    proxy_dir, empty_dir = tmp_path_factory.mktemp("proxy-tiny"), tmp_path_factory.mktemp("e")
    init_proxy_model(config_for("tiny"), 0, proxy_dir)
    saved_cache = os.environ.get("GEN3D_BENCH_CACHE")
    os.environ["GEN3D_BENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))  # int8 builds
    try:
        yield _run_all(out, proxy_dir, empty_dir)
    finally:
        if saved_cache is None:
            os.environ.pop("GEN3D_BENCH_CACHE", None)
        else:
            os.environ["GEN3D_BENCH_CACHE"] = saved_cache


def _run_all(out: Path, proxy_dir: Path, empty_dir: Path) -> dict[str, Path]:
    quiet = lambda line: None  # noqa: E731
    return {
        "model": run_model_suite(
            ModelSuiteConfig(
                backend="proxy",
                size="tiny",
                precisions=["fp32", "int8"],
                batches=[1, 2],
                warmup=1,
                repeats=2,
                model_dir=proxy_dir,
            ),
            out,
            quiet,
        ),
        "server": run_server_suite(
            ServerSuiteConfig(
                backend="silhouette",
                levels=[1, 2],
                duration_s=0.6,
                warmup_s=0.2,
                max_requests=50,
                inprocess_repeats=2,
                ping_interval_s=0.02,
                model_dir=empty_dir,
            ),
            out,
            quiet,
        ),
        "coldstart": run_coldstart_suite(
            ColdstartConfig(backend="silhouette", repeats=1, model_dir=empty_dir), out, quiet
        ),
        "peers": run_peers_suite(
            PeersConfig(
                backend="silhouette",
                levels=[2, 1],
                duration_s=0.4,
                warmup_s=0.1,
                max_requests=50,
                slices=2,
                model_dir=empty_dir,
            ),
            out,
            quiet,
        ),
        "root": out,
    }


def _doc(path: Path) -> dict:
    doc = json.loads(path.read_text())
    assert FINGERPRINT_KEYS <= set(doc["environment"])
    assert path.parent.name == "cpu"
    return doc


def test_model_suite_times_each_batch_and_skips_what_it_cannot_run(results) -> None:
    doc = _doc(results["model"])
    rows = {(r["precision"], r["batch"]): r for r in doc["results"]}
    # int8 is built by gen3d.model_opt and loaded through its manifest
    measured = {("fp32", 1), ("fp32", 2), ("int8", 1), ("int8", 2)}
    assert rows[("int8", 1)]["variant"] == "fp32+int8-dynamic(pytorch)"
    assert set(rows) == measured
    for (_, batch), r in rows.items():
        assert r["batch_seconds"]["n"] == 2
        assert r["throughput_per_s"] == pytest.approx(batch / r["batch_seconds"]["median"])
        assert r["peak_memory_mb"] > 0 and r["memory_kind"] == "rss"
    assert "proxy-tiny int8" not in {s["what"] for s in doc["skipped"]}


def test_server_suite_measures_levels_efficiency_and_ping(results) -> None:
    doc = _doc(results["server"])
    assert [r["concurrency"] for r in doc["results"]] == [1, 2]
    for r in doc["results"]:
        assert r["ok"] >= 2 * r["concurrency"] and r["errors"] == {}
        assert 0 < r["latency_ms"]["median"] <= r["latency_ms"]["p99"]
        assert r["serving_efficiency"] == pytest.approx(
            r["throughput_per_s"] / r["in_process_per_s"]
        )
        assert r["ping_ms"]["n"] >= 1 and r["ping_failures"] == 0
        assert r["server_metadata"]["batch_size"]["min"] >= 1
    assert doc["config"]["server_peak_rss_mb_batching_on"] > 0


def test_coldstart_splits_ready_time_into_parts(results) -> None:
    doc = _doc(results["coldstart"])
    (row,) = doc["results"]
    run = row["runs"][0]
    parts = run["import_s"] + run["load_s"] + run["warmup_s"] + run["other_s"]
    assert parts == pytest.approx(run["ready_s"], abs=0.02)
    assert run["import_s"] > 0 and run["warmup_s"] > 0


def test_peers_runs_litserve_and_byoc_on_loopback_with_our_batch_settings(results) -> None:
    doc = _doc(results["peers"])
    assert doc["config"]["bound_to"] == {
        "ours": "127.0.0.1",
        "litserve": "127.0.0.1",
        "byoc": "127.0.0.1",
    }
    assert doc["config"]["byoc_workers"] == (os.cpu_count() or 1)
    row, second = doc["results"]
    # each server goes first in turn: ours is not always measured right after a level change
    assert row["order"] == ["ours", "litserve", "byoc", "ceiling"]
    assert second["order"] == ["litserve", "byoc", "ceiling", "ours"]
    assert second["ours"]["ok"] > 0 and second["byoc"]["ok"] > 0
    # each server's time at a level came in two interleaved windows, pooled
    for server in ("ours", "litserve", "byoc", "ceiling"):
        assert row["slices"] == 2 and row[server]["slices"] == 2
        assert row[server]["window_s"] >= 2 * 0.2
    assert row["ours"]["ok"] > 0 and row["litserve"]["ok"] > 0 and row["byoc"]["ok"] > 0
    assert row["throughput_ratio"] == pytest.approx(
        row["ours"]["throughput_per_s"] / row["litserve"]["throughput_per_s"]
    )
    assert row["byoc_throughput_ratio"] == pytest.approx(
        row["ours"]["throughput_per_s"] / row["byoc"]["throughput_per_s"]
    )
    assert row["byoc_p99_ratio"] == pytest.approx(
        row["ours"]["latency_ms"]["p99"] / row["byoc"]["latency_ms"]["p99"]
    )
    # the in-process ceiling: the same work in one process per BYOC worker, no server
    assert doc["config"]["ceiling_processes"] == doc["config"]["byoc_workers"]
    ceiling = row["ceiling"]
    assert ceiling["ok"] >= doc["config"]["ceiling_processes"] and ceiling["errors"] == {}
    assert row["ceiling_ratio"] == pytest.approx(
        row["ours"]["throughput_per_s"] / ceiling["throughput_per_s"]
    )
    assert row["byoc_ceiling_ratio"] == pytest.approx(
        row["byoc"]["throughput_per_s"] / ceiling["throughput_per_s"]
    )


def test_measuring_order_turns_with_level_and_offset() -> None:
    names = ["ours", "litserve", "byoc"]
    assert [measuring_order(names, i)[0] for i in range(4)] == [
        "ours",
        "litserve",
        "byoc",
        "ours",
    ]
    assert measuring_order(names, 0, offset=2) == ["byoc", "ours", "litserve"]
    assert sorted(measuring_order(names, 5, offset=7)) == sorted(names)
    assert measuring_order([], 3) == []


def test_report_from_real_results(results, tmp_path: Path) -> None:
    readme, plots, spi = tmp_path / "README.md", tmp_path / "plots", tmp_path / "spi.json"
    summary = build_report(results["root"], readme, plots, spi)
    assert summary["documents"] == 4 and summary["devices"] == ["cpu"]
    text = readme.read_text()
    for heading in (
        "Targets: where we stand",
        "Model, in-process",
        "Server: real gunicorn",
        "Cold start",
        "Peers: LitServe and an AWS-BYOC-style server",
    ):
        assert heading in text
    assert "| BYOC req/s |" in text
    assert "not measured here: this machine has no GPU" in text
    images = sorted(plots.glob("*.png"))
    assert {p.stem for p in images} == {
        "cpu_throughput",
        "cpu_latency",
        "cpu_batch_scaling",
        "cpu_precision",
        "cpu_coldstart",
    }
    for image in images:
        with Image.open(image) as im:
            assert im.format == "PNG" and im.size[0] > 300
        assert f"plots/{image.name}" in text
    entries = read_entries(spi)  # the cost model's own reader
    (silhouette,) = [e for e in entries if e.backend == "silhouette"]  # served only
    assert silhouette.seconds_per_image > 0 and silhouette.batch >= 1
    proxy = {(e.precision, e.batch) for e in entries if e.backend == "proxy"}
    assert {("fp32", 1), ("fp32", 2)} <= proxy  # no served proxy run: in-process entries
    assert all(e.device == "cpu" and e.gpu_name is None for e in entries)
