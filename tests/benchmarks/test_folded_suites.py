"""The suites that replaced one-off measurement scripts: peers repeated, CPU per request,
memory under large images. The two that start servers run for real on 127.0.0.1 with tiny
bounds (silhouette: no weights); their JSON is read back with json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gen3d.benchmarks.cpu_per_request import (
    CpuPerRequestConfig,
    process_tree,
    run_cpu_per_request_suite,
)
from gen3d.benchmarks.memory import MemoryConfig, run_memory_suite
from gen3d.benchmarks.peers_repeats import summarize_runs
from gen3d.cli.main import main


def peers_row(
    level: int, ours: float, litserve: float, byoc: float, ceiling: float | None = None
) -> dict:
    def server(rate: float) -> dict:
        return {"throughput_per_s": rate, "latency_ms": {"p99": 1000 / rate}}

    extra = {} if ceiling is None else {"ceiling": server(ceiling), "ceiling_ratio": ours / ceiling}
    return extra | {
        "concurrency": level,
        "ours": server(ours),
        "litserve": server(litserve),
        "byoc": server(byoc),
        "throughput_ratio": ours / litserve,
        "p99_ratio": litserve / ours,
        "byoc_throughput_ratio": ours / byoc,
        "byoc_p99_ratio": None,  # a run without the figure: left out of the median
    }


def test_repeats_are_summarized_as_medians_per_level_with_each_runs_ratio() -> None:
    runs = [
        [peers_row(4, 10, 10, 5, 40), peers_row(16, 20, 10, 10)],
        [peers_row(4, 12, 10, 5, 20), peers_row(16, 30, 10, 10, 30)],
        [peers_row(4, 30, 10, 5, 30), peers_row(16, 10, 10, 10)],
    ]
    four, sixteen = summarize_runs(runs)
    assert four["concurrency"] == 4 and four["runs"] == 3
    assert four["ours"]["throughput_per_s"] == 12  # the median, not the mean (17.3)
    assert four["throughput_ratio"] == 1.2
    assert four["throughput_ratio_runs"] == [1.0, 1.2, 3.0]
    assert four["byoc_p99_ratio"] is None and four["byoc_p99_ratio_runs"] == [None] * 3
    assert sixteen["ours"]["throughput_per_s"] == 20 and sixteen["byoc_throughput_ratio"] == 2.0
    # the in-process ceiling: a median of the runs that measured it
    assert four["ceiling"]["throughput_per_s"] == 30 and four["ceiling_ratio"] == 0.6
    assert "ceiling" not in sixteen  # one run of three had it: no median of the three
    assert sixteen["ceiling_ratio"] == 1.0 and sixteen["ceiling_ratio_runs"] == [None, 1.0, None]


def test_peers_repeats_turn_the_order_once_per_run(monkeypatch, tmp_path: Path) -> None:
    from gen3d.benchmarks import peers_repeats

    offsets = []

    def one_run(config, out: Path, progress=print) -> Path:
        offsets.append(config.order_offset)
        out.mkdir(parents=True)
        rate = 10.0 + len(offsets)
        doc = {"environment": {"device": "cpu"}, "results": [peers_row(4, rate, 10, 5)]}
        (out / "peers.json").write_text(json.dumps(doc))
        return out / "peers.json"

    monkeypatch.setattr(peers_repeats, "run_peers_suite", one_run)
    argv = ["bench", "peers", "--repeats", "3", "--levels", "4", "--out", str(tmp_path)]
    assert main(argv) == 0
    assert offsets == [0, 1, 2]
    (path,) = tmp_path.rglob("peers_repeats_silhouette.json")
    doc = json.loads(path.read_text())
    assert doc["suite"] == "peers_repeats" and doc["config"]["repeats"] == 3
    assert doc["results"][0]["ours"]["throughput_per_s"] == 12.0
    assert len(doc["summary"]["runs"]) == 3


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "peers", "--repeats", "0"],
        ["bench", "cpu", "--clients", "0"],
        ["bench", "cpu", "--peer", "torchserve"],
        ["bench", "memory", "--concurrency", "0"],
        ["bench", "memory", "--env", "NOEQUALS"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_fewer_requests_than_clients_is_a_one_line_error(capsys) -> None:
    assert main(["bench", "cpu", "--clients", "8", "--requests", "4"]) == 2
    assert "--requests must be at least --clients" in capsys.readouterr().err


def test_process_tree_finds_this_process_and_its_children() -> None:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        import os

        tree = process_tree(os.getpid())
        assert tree[0] == os.getpid() and child.pid in tree
    finally:
        child.kill()
        child.wait()


@pytest.mark.slow
def test_cpu_per_request_counts_every_round_on_both_servers(tmp_path: Path) -> None:
    config = CpuPerRequestConfig(
        backend="silhouette", peer="byoc", clients=2, requests=6, rounds=2, byoc_workers=1
    )
    lines: list[str] = []
    path = run_cpu_per_request_suite(config, tmp_path, lines.append)
    assert path.name == "cpu_per_request_silhouette_c2_byoc.json"
    doc = json.loads(path.read_text())
    by_server = {row["server"]: row for row in doc["results"]}
    assert set(by_server) == {"ours", "byoc", "ceiling"}
    for name in ("ours", "byoc"):
        row = by_server[name]
        assert len(row["rounds"]) == 2 and all(r["requests"] == 6 for r in row["rounds"])
        # a silhouette request costs real CPU in the server's processes, and python's part
        # is in the split (ours adds nginx's)
        assert row["median"]["server_cpu_ms_per_request"] > 0
        assert all("python_user" in r["split_ms_per_request"] for r in row["rounds"])
    assert any("nginx_user" in r["split_ms_per_request"] for r in by_server["ours"]["rounds"])
    # the in-process ceiling: a round after each pair, its children's CPU counted the same
    # way, and each server's throughput and CPU put against it
    ceiling = by_server["ceiling"]
    assert doc["config"]["ceiling_processes"] == 1  # as many as the BYOC peer's workers
    assert len(ceiling["rounds"]) == 2
    for r in ceiling["rounds"]:
        assert r["requests"] >= 1 and r["server_cpu_ms_per_request"] > 0
        assert r["client_cpu_ms_per_request"] == 0.0
    top = ceiling["median"]
    for name in ("ours", "byoc"):
        m, over = by_server[name]["median"], doc["summary"][name]
        assert over["ceiling_ratio"] == pytest.approx(
            m["throughput_per_s"] / top["throughput_per_s"], abs=1e-3
        )
        assert over["with_client_cpu_ms_over_ceiling"] == pytest.approx(
            m["server_cpu_ms_per_request"]
            + m["client_cpu_ms_per_request"]
            - top["server_cpu_ms_per_request"],
            abs=1e-3,
        )


@pytest.mark.slow
def test_memory_suite_reads_the_one_workers_peak(tmp_path: Path) -> None:
    config = MemoryConfig(backend="silhouette", concurrency=3, side=1024)
    path = run_memory_suite(config, tmp_path, lambda _: None)
    (row,) = json.loads(path.read_text())["results"]
    assert row["statuses"] == {"200": 3} and row["same_worker"]
    assert row["peak_rss_mb"] >= row["baseline_peak_rss_mb"] > 10
    assert row["peak_rss_mb"] >= row["rss_after_mb"] > 0
    assert row["image"].startswith("1024x1024 RGBA PNG")
