"""Target judging and the seconds-per-image file, on hand-made documents whose right
answers are known (each target is met in one document set and missed in another)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gen3d.benchmarks import targets
from gen3d.benchmarks.report import build_report, seconds_per_image
from gen3d.benchmarks.results_io import SCHEMA
from gen3d.cost.bench import pick_entry, read_entries

CPU = {
    "device": "cpu",
    "gpu_name": None,
    "instance_type": None,
    "timestamp": "t",
    "load_average": [0.1, 0.2, 0.3],
}
GPU = {**CPU, "device": "cuda", "gpu_name": "NVIDIA A10G", "instance_type": "ml.g5.xlarge"}


def _lat(p50: float, p99: float) -> dict:
    return {"n": 100, "median": p50, "p90": p99, "p99": p99}


def server_doc(efficiency: float, ping_p99: float, backend: str = "silhouette") -> dict:
    rows = []
    for c in (1, 4, 16):
        served = 10.0 * min(c, 4) * (efficiency if c >= 4 else 1.0)
        rows.append(
            {
                "concurrency": c,
                "batching": "on",
                "backend": backend,
                "max_batch_size": 8,
                "throughput_per_s": served,
                "in_process_per_s": served / efficiency,
                "serving_efficiency": efficiency,
                "errors": {},
                "ok": 100,
                "latency_ms": _lat(50, 90),
                "ping_ms": {"p99": ping_p99 if c == 16 else 1.0},
            }
        )
    return {
        "schema": SCHEMA,
        "suite": "server",
        "name": backend,
        "environment": CPU,
        "config": {
            "backend": backend,
            "precision": "fp32",
            "max_batch_size": 8,
            "max_batch_delay_ms": 10.0,
        },
        "results": rows,
    }


def peers_doc(thr_ratio: float, p99_ratio: float) -> dict:
    return {
        "schema": SCHEMA,
        "suite": "peers",
        "name": "silhouette",
        "environment": CPU,
        "config": {"max_batch_size": 8, "max_batch_delay_ms": 10.0},
        "results": [
            {
                "concurrency": 4,
                "throughput_ratio": thr_ratio,
                "p99_ratio": p99_ratio,
                "ours": {
                    "throughput_per_s": 10 * thr_ratio,
                    "errors": {},
                    "latency_ms": _lat(1, 100 * p99_ratio),
                },
                "litserve": {"throughput_per_s": 10, "errors": {}, "latency_ms": _lat(1, 100)},
            }
        ],
    }


def coldstart_doc(ready: float) -> dict:
    return {
        "schema": SCHEMA,
        "suite": "coldstart",
        "name": "silhouette",
        "environment": CPU,
        "config": {},
        "results": [
            {
                "backend": "silhouette",
                "artifact": "plain directory",
                "ready_s": {"n": 3, "median": ready},
            }
        ],
    }


def gpu_model_doc(speedup: float, steps: int = 2) -> dict:
    rows = [
        {
            "backend": "proxy",
            "precision": "fp16",
            "batch": b,
            "throughput_per_s": 1.0 * (speedup if b == 8 else 1.0),
            "seconds_per_image": 1.0 / (speedup if b == 8 else 1.0),
            "per_sample_ms": {"median": 1000.0},
        }
        for b in (1, 8)
    ]
    return {
        "schema": SCHEMA,
        "suite": "model",
        "name": "proxy-full",
        "environment": GPU,
        "config": {"size": "full", "steps": steps, "default_steps": [25, 25]},
        "results": rows,
    }


def _status(results: list[targets.TargetResult], prefix: str) -> str:
    return next(t.status for t in results if t.target.startswith(prefix))


@pytest.mark.parametrize(
    ("docs", "expected"),
    [
        (
            [server_doc(0.97, 12.0), peers_doc(1.1, 0.8), coldstart_doc(0.6), gpu_model_doc(3.5)],
            "met",
        ),
        (
            [server_doc(0.80, 75.0), peers_doc(0.9, 1.3), coldstart_doc(4.2), gpu_model_doc(1.4)],
            "missed",
        ),
    ],
)
def test_each_target_met_or_missed(docs: list[dict], expected: str) -> None:
    results = targets.evaluate(docs)
    assert len(results) == 6
    assert {t.status for t in results} == {expected}
    assert _status(results, "serving efficiency") == expected


def test_ping_target_is_judged_at_the_top_level_only() -> None:
    doc = server_doc(0.97, 49.0)
    doc["results"][0]["ping_ms"]["p99"] = 500.0  # c=1 is not "full load"
    (ping,) = [t for t in targets.evaluate([doc]) if t.target.startswith("/ping")]
    assert ping.status == "met" and ping.value == "49.0 ms"


def test_nothing_measured_is_said_not_assumed() -> None:
    results = targets.evaluate([])
    assert {t.status for t in results} == {"not measured"}
    gpu = results[-1]
    assert "no GPU" in gpu.detail


def test_seconds_per_image_prefers_served_and_scales_reduced_steps(tmp_path: Path) -> None:
    docs = [server_doc(0.97, 10.0), gpu_model_doc(3.5, steps=2)]
    entries = seconds_per_image(docs)
    silhouette = [e for e in entries if e["backend"] == "silhouette"]
    assert len(silhouette) == 1 and silhouette[0]["source"].startswith("served")
    # best served level: c=16 at 40 * 0.97 req/s
    assert silhouette[0]["seconds_per_image"] == pytest.approx(1 / (40 * 0.97), rel=1e-5)
    proxy = {e["batch"]: e for e in entries if e["backend"] == "proxy"}
    assert proxy[1]["seconds_per_image"] == pytest.approx(12.5)  # 1 s at 2 steps -> 25
    assert proxy[8]["instance_type"] == "ml.g5.xlarge"
    path = tmp_path / "spi.json"
    path.write_text(json.dumps({"entries": entries}))
    chosen = pick_entry(read_entries(path), "proxy", None, "ml.g5.xlarge")
    assert chosen.batch == 8 and chosen.gpu_name == "NVIDIA A10G"


@pytest.mark.slow  # renders the report and its plots
def test_report_writes_one_section_per_device(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for folder, doc in (("cpu", server_doc(0.97, 10.0)), ("cuda-nvidia-a10g", gpu_model_doc(3.5))):
        (results / folder).mkdir(parents=True)
        (results / folder / f"{doc['suite']}_{doc['name']}.json").write_text(json.dumps(doc))
    (results / "cpu" / "model_opt_other.json").write_text('{"not": "ours"}')  # ignored
    summary = build_report(
        results, tmp_path / "README.md", tmp_path / "plots", results / "seconds_per_image.json"
    )
    assert summary["devices"] == ["cpu", "cuda-nvidia-a10g"]
    text = (tmp_path / "README.md").read_text()
    assert "## Results on `cpu`" in text and "## Results on `cuda-nvidia-a10g`" in text
    assert "3.50x" in text  # the GPU batching target's measured value
    # rebuilding reads its own seconds_per_image output without counting it as a result
    again = build_report(
        results, tmp_path / "README.md", tmp_path / "plots", results / "seconds_per_image.json"
    )
    assert again["documents"] == 2
