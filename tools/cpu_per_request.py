"""CPU per request of each server, counted exactly: the same requests, every process.

Throughput on this shared machine moves with the speed of its cores (tools/vcpu_speed.py),
so a few per cent between two servers is within the noise of any one window. What a
server spends per request moves far less and says where a difference would come from.
This starts our server and a peer on the same backend (127.0.0.1 only), sends each the
same fixed number of the benchmarks' JSON requests from `--clients` keep-alive clients,
in rounds alternating A B, B A, ... (the one not measured paused, as in the peers suite),
and reads every process's user and system CPU from /proc before and after: nginx, the
gunicorn master and workers (or the peer's), split by process kind, plus the machine's
idle time during the round (a server that leaves cores idle at saturation loses
throughput without spending more per request).

    .venv/bin/python tools/cpu_per_request.py --backend silhouette --clients 16 \\
        --peer byoc --out benchmarks/results/cpu/cpu_per_request_silhouette_c16.json
    .venv/bin/python tools/cpu_per_request.py --backend proxy --clients 4 \\
        --peer litserve --out benchmarks/results/cpu/cpu_per_request_proxy-tiny_c4.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from gen3d.benchmarks import payloads
from gen3d.benchmarks.backends import prepare_model_dir, server_env
from gen3d.benchmarks.byoc_peer import start_byoc
from gen3d.benchmarks.peers import JSON_HEADERS, PeersConfig, measured_alone, start_litserve
from gen3d.serve.launcher import ManagedProcess, start_server

sys.path.insert(0, str(Path(__file__).resolve().parent))
from request_phases import process_tree  # a tool beside this one

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> dict[int, tuple[str, float, float]]:
    """pid -> (kind, user s, system s); kind is nginx or python."""
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/comm") as comm:
                kind = "nginx" if comm.read().startswith("nginx") else "python"
        except OSError:
            continue
        out[pid] = (kind, int(fields[11]) / TICK, int(fields[12]) / TICK)
    return out


def idle_seconds() -> float:
    """All CPUs' idle time so far (/proc/stat)."""
    with open("/proc/stat") as stat:
        return int(stat.readline().split()[4]) / TICK


def send(port: int, body: bytes, clients: int, count: int) -> float:
    """`count` requests from `clients` keep-alive connections; wall seconds. Every answer
    must be 200: a refusal would make the count wrong."""
    left, lock, failures = [count], threading.Lock(), []

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            while True:
                with lock:
                    if left[0] <= 0:
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("silhouette", "proxy"), default="silhouette")
    parser.add_argument("--peer", choices=("byoc", "litserve"), default="byoc")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=240, help="requests per round")
    parser.add_argument("--rounds", type=int, default=6, help="rounds per server")
    parser.add_argument("--out", type=Path, help="write every round and the medians here")
    args = parser.parse_args()
    if min(args.clients, args.requests, args.rounds) < 1 or args.requests < args.clients:
        parser.error("--clients, --requests and --rounds must be >= 1, requests >= clients")
    config = PeersConfig(backend=args.backend, levels=[args.clients])
    model_dir = prepare_model_dir(config.backend, config.size, None)
    settings = config.settings(model_dir, max_queue=max(64, 2 * args.clients))
    body = payloads.json_body()
    rounds: dict[str, list[dict[str, Any]]] = {"ours": [], args.peer: []}
    with tempfile.TemporaryDirectory(prefix="gen3d-cpu-per-request-") as tmp:
        servers = {"ours": start_server(server_env(settings), log_path=Path(tmp) / "ours.log")}
        starter = start_byoc if args.peer == "byoc" else start_litserve
        servers[args.peer] = starter(config, model_dir, Path(tmp) / f"{args.peer}.log")
        try:
            for server in servers.values():
                server.wait_ready(config.ready_timeout_s)
            for name, server in servers.items():  # warm: connections, caches, first batches
                with measured_alone(servers, name, config):
                    send(server.port, body, args.clients, 2 * args.clients)
            names = list(servers)
            for index in range(args.rounds):
                for name in names if index % 2 == 0 else names[::-1]:
                    with measured_alone(servers, name, config):
                        result = one_round(servers[name], body, args.clients, args.requests)
                    rounds[name].append(result)
                    print(
                        f"  {name:8s} {result['throughput_per_s']:6.2f} req/s, server CPU "
                        f"{result['server_cpu_ms_per_request']:6.2f} ms/request "
                        f"{result['split_ms_per_request']}, idle {result['idle_fraction']:.1%}",
                        flush=True,
                    )
        finally:
            for server in servers.values():
                server.stop()
    medians = {
        name: {
            key: round(statistics.median(r[key] for r in results), 3)
            for key in (
                "throughput_per_s",
                "server_cpu_ms_per_request",
                "client_cpu_ms_per_request",
                "idle_fraction",
            )
        }
        for name, results in rounds.items()
    }
    for name, median in medians.items():
        print(f"{name}: median {median}")
    if args.out:
        doc = {
            "what": __doc__.splitlines()[0],
            "command": " ".join(["python", *sys.argv]),
            "backend": config.name,
            "peer": args.peer,
            "clients": args.clients,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "median": medians,
            "rounds": rounds,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
