"""CPU per request suite: what each server spends on the same requests, counted exactly.

Throughput on a shared machine moves with the speed of its cores (they slow down by up
to 2x for tens of seconds at a time), so a few per cent between two servers is within
the noise of any one window. What a server spends per request moves far less and says
where a difference comes from. This starts our server and one peer (LitServe or the
AWS-BYOC-style server) on the same backend, 127.0.0.1 only, sends each the same fixed
number of the benchmarks' JSON requests from `clients` keep-alive connections, in rounds
alternating A B, B A, ... (the one not measured paused, as in the peers suite), and reads
every process's user and system CPU from /proc before and after each round: nginx, the
gunicorn master and workers (or the peer's processes), split by kind, plus the machine's
idle share during the round (a server that leaves cores idle at saturation loses
throughput without spending more per request). Every answer must be a 200, or the count
would be wrong.

The in-process ceiling (gen3d.benchmarks.ceiling: the same request's work in one process
per BYOC worker, no server and no client) takes a round of its own after each pair, as
long as the server round before it, its children's CPU read the same way. The difference
between a server's CPU per request (plus the client's) and the ceiling's is what serving
over HTTP costs on these cores; with the idle share it says where a `ceiling_ratio` below
1 in the peers suite goes.
"""

from __future__ import annotations

import http.client
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gen3d.benchmarks import payloads
from gen3d.benchmarks.backends import prepare_model_dir, server_env
from gen3d.benchmarks.byoc_peer import byoc_env, byoc_workers
from gen3d.benchmarks.ceiling import InProcessCeiling
from gen3d.benchmarks.environment import fingerprint
from gen3d.benchmarks.peers import JSON_HEADERS, measured_alone, start_servers
from gen3d.benchmarks.results_io import Recorder
from gen3d.benchmarks.suite_config import PeerSuiteConfig
from gen3d.serve.local_server import ManagedProcess

TICK = os.sysconf("SC_CLK_TCK")
MEDIANS = ("throughput_per_s", "server_cpu_ms_per_request", "client_cpu_ms_per_request")
CEILING = "ceiling"


@dataclass(kw_only=True)
class CpuPerRequestConfig(PeerSuiteConfig):
    peer: str = "byoc"  # or "litserve"
    clients: int = 16
    requests: int = 240  # per round
    rounds: int = 6  # per server


def process_tree(root: int) -> list[int]:
    """`root` and every process below it, from the kernel's children lists."""
    pids, frontier = [root], [root]
    while frontier:
        children = []
        for pid in frontier:
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                try:
                    children += [int(c) for c in task.read_text().split()]
                except OSError:
                    continue
        pids += children
        frontier = children
    return pids


def cpu_seconds(pids: list[int]) -> dict[int, tuple[str, float, float]]:
    """pid -> (kind, user s, system s); kind is nginx or python. A process gone between
    the readings is lost to both, so it adds nothing."""
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            comm = Path(f"/proc/{pid}/comm").read_text()
            kind = "nginx" if comm.startswith("nginx") else "python"
        except OSError:
            continue
        out[pid] = (kind, int(fields[11]) / TICK, int(fields[12]) / TICK)
    return out


def idle_seconds() -> float:
    """All CPUs' idle time so far (/proc/stat)."""
    with open("/proc/stat") as stat:
        return int(stat.readline().split()[4]) / TICK


def send(port: int, body: bytes, clients: int, count: int) -> float:
    """`count` requests from `clients` keep-alive connections; wall seconds."""
    left, lock, failures = [count], threading.Lock(), []

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            while True:
                with lock:
                    if left[0] <= 0 or failures:
                        return
                    left[0] -= 1
                conn.request("POST", "/invocations", body=body, headers=JSON_HEADERS)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    failures.append(response.status)
                    return
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"answers other than 200: {failures}")
    return time.perf_counter() - started


def one_round(server: ManagedProcess, body: bytes, clients: int, count: int) -> dict[str, Any]:
    """One measured round: throughput and CPU per request, split by process kind."""
    pids = process_tree(server.process.pid)
    before, idle_before, client_before = cpu_seconds(pids), idle_seconds(), os.times()
    wall = send(server.port, body, clients, count)
    after, idle_after, client_after = cpu_seconds(pids), idle_seconds(), os.times()
    split: dict[str, float] = {}
    for pid, (kind, user, system) in after.items():
        _, user_before, system_before = before.get(pid, (kind, 0.0, 0.0))
        split[f"{kind}_user"] = split.get(f"{kind}_user", 0.0) + user - user_before
        split[f"{kind}_system"] = split.get(f"{kind}_system", 0.0) + system - system_before
    client = sum(client_after[:2]) - sum(client_before[:2])
    return {
        "requests": count,
        "wall_s": round(wall, 3),
        "throughput_per_s": round(count / wall, 3),
        "server_cpu_ms_per_request": round(1000 * sum(split.values()) / count, 3),
        "split_ms_per_request": {k: round(1000 * v / count, 3) for k, v in sorted(split.items())},
        "client_cpu_ms_per_request": round(1000 * client / count, 3),
        "idle_fraction": round((idle_after - idle_before) / wall / (os.cpu_count() or 1), 4),
    }


def ceiling_round(ceiling: InProcessCeiling, seconds: float) -> dict[str, Any]:
    """One round of the in-process ceiling: its children run requests back to back for
    `seconds`; the same figures as a server's round (no client: its CPU is 0)."""
    pids = [child.pid for child in ceiling.children]
    before, idle_before, started = cpu_seconds(pids), idle_seconds(), time.perf_counter()
    window = ceiling.measure(seconds, 0)
    after, idle_after = cpu_seconds(pids), idle_seconds()
    wall = time.perf_counter() - started
    count = len(window.records)
    used = sum(u + s - before[pid][1] - before[pid][2] for pid, (_, u, s) in after.items())
    return {
        "requests": count,
        "wall_s": round(window.end - window.start, 3),
        "throughput_per_s": round(count / (window.end - window.start), 3),
        "server_cpu_ms_per_request": round(1000 * used / count, 3),
        "client_cpu_ms_per_request": 0.0,
        "idle_fraction": round((idle_after - idle_before) / wall / (os.cpu_count() or 1), 4),
    }


def over_ceiling(medians: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per server: its throughput over the ceiling's, and the CPU per request it spends
    beyond the ceiling's, in the server's processes and with the client's added."""
    top = medians[CEILING]
    return {
        name: {
            "ceiling_ratio": round(m["throughput_per_s"] / top["throughput_per_s"], 3),
            "server_cpu_ms_over_ceiling": round(
                m["server_cpu_ms_per_request"] - top["server_cpu_ms_per_request"], 3
            ),
            "with_client_cpu_ms_over_ceiling": round(
                m["server_cpu_ms_per_request"]
                + m["client_cpu_ms_per_request"]
                - top["server_cpu_ms_per_request"],
                3,
            ),
        }
        for name, m in medians.items()
        if name != CEILING
    }


def run_cpu_per_request_suite(
    config: CpuPerRequestConfig, out_root: Path, progress: Callable[[str], None] = print
) -> Path:
    """Rounds on ours and the peer in turn; OUT/<device>/cpu_per_request_<name>.json."""
    if config.peer not in ("byoc", "litserve"):
        raise ValueError(f"peer must be byoc or litserve, not {config.peer!r}")
    if min(config.clients, config.requests, config.rounds) < 1:
        raise ValueError("clients, requests and rounds must be >= 1")
    if config.requests < config.clients:
        raise ValueError("requests per round must be at least the clients")
    name = f"{config.name}_c{config.clients}_{config.peer}"
    recorder = Recorder(
        "cpu_per_request", name, fingerprint(config.device, config.instance_type), config.document()
    )
    model_dir = prepare_model_dir(config.backend, config.size, config.model_dir)
    settings = config.settings(model_dir, max_queue=max(64, 2 * config.clients))
    body = payloads.json_body()
    rounds: dict[str, list[dict[str, Any]]] = {"ours": [], config.peer: [], CEILING: []}
    processes = recorder.config["ceiling_processes"] = byoc_workers(config)
    with tempfile.TemporaryDirectory(prefix="gen3d-cpu-per-request-") as tmp:
        servers = start_servers(config, model_dir, server_env(settings), Path(tmp), (config.peer,))
        ceiling = InProcessCeiling(
            byoc_env(config, model_dir), processes, Path(tmp) / "ceiling.log"
        )
        try:
            ceiling.wait_ready(config.ready_timeout_s)
            for name_, server in servers.items():  # warm: connections, caches, first batches
                with measured_alone(servers, name_, config):
                    send(server.port, body, config.clients, 2 * config.clients)
            names = list(servers)
            for index in range(config.rounds):
                for server_name in names if index % 2 == 0 else names[::-1]:
                    with measured_alone(servers, server_name, config):
                        result = one_round(
                            servers[server_name], body, config.clients, config.requests
                        )
                    rounds[server_name].append(result)
                    _progress(progress, server_name, result)
                with measured_alone(servers, CEILING, config):  # every server paused
                    result = ceiling_round(ceiling, result["wall_s"])
                rounds[CEILING].append(result)
                _progress(progress, CEILING, result)
        finally:
            ceiling.stop()
            for server in servers.values():
                server.stop()
    all_medians = {}
    for server_name, results in rounds.items():
        medians = {k: round(statistics.median(r[k] for r in results), 3) for k in MEDIANS}
        medians["idle_fraction"] = round(statistics.median(r["idle_fraction"] for r in results), 4)
        all_medians[server_name] = medians
        recorder.add({"server": server_name, "median": medians, "rounds": results})
        progress(f"{server_name}: median {medians}")
    recorder.summary = over_ceiling(all_medians)
    progress(f"over the in-process ceiling: {recorder.summary}")
    return recorder.write(out_root)


def _progress(progress: Callable[[str], None], name: str, result: dict[str, Any]) -> None:
    progress(
        f"  {name:8s} {result['throughput_per_s']:6.2f} req/s, server "
        f"CPU {result['server_cpu_ms_per_request']:6.2f} ms/request, idle "
        f"{result['idle_fraction']:.1%}"
    )
