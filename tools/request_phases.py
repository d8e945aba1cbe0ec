"""Where a request's time and CPU go, ours against the AWS-BYOC-style peer (issue 12).

At one concurrency, on the peers suite's backend and request (256² JSON, GLB answer),
this starts our server (nginx + gunicorn, as the image runs it) and the BYOC peer (Flask
on gunicorn sync workers), then alternates closed-loop rounds between them. Per round:

- throughput and client-side latency percentiles (gen3d.benchmarks.loadgen);
- CPU seconds per request of each server's whole process tree (every process under it,
  nginx included, read from /proc before and after), and of this load generator;
- for ours, the phases our access log records per request: queue_ms (waiting for the
  model), inference_ms and encode_ms (finishing and encoding the answer).

CPU per request is steadier than throughput on a shared machine (other jobs take cores
from both servers alike, but do not add to either's CPU), so it shows what each request
costs; the phases show where ours waits. Loopback only, bounded in time.

    .venv/bin/python tools/request_phases.py --backend silhouette --concurrency 4 \\
        --out benchmarks/results/cpu/request_phases_silhouette_c4.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gen3d.benchmarks import payloads
from gen3d.benchmarks.backends import prepare_model_dir, server_env
from gen3d.benchmarks.byoc_peer import start_byoc
from gen3d.benchmarks.environment import fingerprint
from gen3d.benchmarks.loadgen import Target, run_load
from gen3d.benchmarks.peers import JSON_HEADERS, PeersConfig
from gen3d.serve.launcher import ManagedProcess, child_pids, start_server

TICKS = os.sysconf("SC_CLK_TCK")
PHASES = ("queue_ms", "inference_ms", "encode_ms", "duration_ms")


def process_tree(root: int) -> list[int]:
    pids, frontier = [root], [root]
    while frontier:
        children = [c for pid in frontier for c in child_pids(pid)]
        pids += children
        frontier = children
    return pids


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """utime + stime of each live process (a process that exits mid-round is lost to
    both readings, so it adds nothing)."""
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / TICKS
    return out


def access_phases(log_path: Path, since: int) -> tuple[dict[str, Any], int]:
    """Percentiles of our access log's phases for /invocations lines after line `since`."""
    lines = log_path.read_text().splitlines()
    records = []
    for line in lines[since:]:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("route") == "/invocations" and record.get("status") == 200:
            records.append(record)
    phases: dict[str, Any] = {}
    for key in PHASES:
        values = sorted(r[key] for r in records if isinstance(r.get(key), int | float))
        if values:
            phases[key] = {
                "p50": round(statistics.median(values), 2),
                "p90": round(values[int(0.9 * (len(values) - 1))], 2),
                "p99": round(values[int(0.99 * (len(values) - 1))], 2),
            }
    return phases, len(lines)


def one_round(
    name: str, server: ManagedProcess, body: bytes, concurrency: int, duration_s: float
) -> dict[str, Any]:
    target = Target(server.url, "/invocations", body, JSON_HEADERS, server.health_path, None)
    pids = process_tree(server.process.pid)
    before, client_before = cpu_seconds(pids), sum(os.times()[:2])
    started = time.perf_counter()
    result = run_load(target, concurrency, duration_s, 100_000, 1.0, 0.5)
    wall = time.perf_counter() - started
    after, client_cpu = cpu_seconds(pids), sum(os.times()[:2]) - client_before
    server_cpu = sum(after[pid] - before.get(pid, after[pid]) for pid in after)
    # requests over the whole round (warm-up included), at the window's rate
    requests = result["throughput_per_s"] * wall
    latency = result["latency_ms"]
    return {
        "server": name,
        "throughput_per_s": round(result["throughput_per_s"], 2),
        "latency_ms": {k: round(latency[k], 1) for k in ("median", "p90", "p99", "max")},
        "server_cpu_ms_per_request": round(1000 * server_cpu / requests, 2),
        "client_cpu_ms_per_request": round(1000 * client_cpu / requests, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("silhouette", "proxy"), default="silhouette")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server, alternated")
    parser.add_argument("--duration-s", type=float, default=8.0, help="window per round")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    config = PeersConfig(backend=args.backend, levels=(args.concurrency,))
    model_dir = prepare_model_dir(config.backend, config.size, None)
    settings = config.settings(model_dir, max_queue=max(64, 2 * args.concurrency))
    body = payloads.json_body()
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="gen3d-phases-") as tmp:
        ours_log = Path(tmp) / "ours.log"
        servers = {"ours": start_server(server_env(settings), log_path=ours_log)}
        try:
            servers["byoc"] = start_byoc(config, model_dir, Path(tmp) / "byoc.log")
            for server in servers.values():
                server.wait_ready(120)
            log_lines = 0
            for index in range(args.rounds):
                for name, server in servers.items():
                    row = one_round(name, server, body, args.concurrency, args.duration_s)
                    if name == "ours":
                        row["phases_ms"], log_lines = access_phases(ours_log, log_lines)
                    row["round"] = index + 1
                    rounds.append(row)
                    print(json.dumps(row), flush=True)
        finally:
            for server in servers.values():
                server.stop()

    def median(server: str, key: str) -> float:
        return round(statistics.median(r[key] for r in rounds if r["server"] == server), 2)

    summary = {
        server: {
            "throughput_per_s": median(server, "throughput_per_s"),
            "server_cpu_ms_per_request": median(server, "server_cpu_ms_per_request"),
        }
        for server in servers
    }
    document = {
        "what": "per-request CPU and phases, ours vs the AWS-BYOC-style peer (issue 12)",
        "command": "python tools/request_phases.py " + " ".join(sys.argv[1:]),
        "environment": fingerprint("cpu", None),
        "backend": args.backend,
        "concurrency": args.concurrency,
        "duration_s": args.duration_s,
        "median": summary,
        "rounds": rounds,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
