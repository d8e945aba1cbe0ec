"""What the nginx front costs per request (issue 12): the same server with and without it.

Both set-ups run this checkout's `serve` (gen3d.serve.supervisor) with one worker: with
GEN3D_FRONT=nginx (the image's default) and GEN3D_FRONT=none (gunicorn alone on the TCP
port). Both are up at once; rounds of sequential requests on one keep-alive connection
alternate between them, so drift on a shared machine hits both alike. `--backend cube`
(a trivial backend: the request path is all there is) shows the cost at its largest;
`silhouette` shows it against a real, small model call.

    .venv/bin/python tools/front_overhead.py --backend cube \\
        --out benchmarks/results/cpu/front_overhead_cube.json
    .venv/bin/python tools/front_overhead.py --backend silhouette \\
        --out benchmarks/results/cpu/front_overhead_silhouette.json
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
from pathlib import Path

from gen3d.serve.front import nginx_binary
from gen3d.serve.launcher import ManagedProcess, free_port, server_command

sys.path.insert(0, str(Path(__file__).resolve().parent))
from observability_overhead import BACKENDS, PLUGINS, one_round, request_body, summary

SETUPS = {"nginx front": "nginx", "gunicorn alone": "none"}


def start(name: str, front: str, backend: str, log_dir: Path) -> ManagedProcess:
    port = free_port()
    env = {
        "GEN3D_BACKEND": BACKENDS[backend],
        "GEN3D_FRONT": front,
        "MODEL_SERVER_WORKERS": "1",
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "GEN3D_BIND_HOST": "127.0.0.1",
        "PYTHONPATH": str(PLUGINS),
    }
    log = log_dir / f"{front}.log"
    server = ManagedProcess(server_command(), port, log, env=env, name=name)
    server.wait_ready(60)
    return server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="cube")
    parser.add_argument("--rounds", type=int, default=8, help="alternations (default 8)")
    parser.add_argument("--requests", type=int, default=100, help="per round (default 100)")
    parser.add_argument("--out", type=Path, required=True, help="JSON result file")
    args = parser.parse_args()
    if nginx_binary() is None:
        parser.error("needs nginx (make front)")
    body = request_body(args.backend)
    latencies: dict[str, list[float]] = {name: [] for name in SETUPS}
    with tempfile.TemporaryDirectory(prefix="gen3d-front-overhead-") as tmp:
        servers = {
            name: start(name, front, args.backend, Path(tmp)) for name, front in SETUPS.items()
        }
        try:
            connections = {
                name: http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
                for name, s in servers.items()
            }
            for connection in connections.values():  # warm-up, not measured
                one_round(connection, body, 10)
            for round_no in range(args.rounds):
                for name, connection in connections.items():
                    latencies[name] += one_round(connection, body, args.requests)
                print(f"round {round_no + 1}/{args.rounds}", flush=True)
        finally:
            for server in servers.values():
                server.stop(10)
    result = {name: summary(values) for name, values in latencies.items()}
    added = {
        key: round(result["nginx front"][key] - result["gunicorn alone"][key], 4)
        for key in ("median_ms", "p90_ms", "mean_ms")
    }
    doc = {
        "what": __doc__.splitlines()[0],
        "command": " ".join(["python", *sys.argv]),
        "backend": args.backend,
        "rounds": args.rounds,
        "requests_per_round": args.requests,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_after": os.getloadavg(),
        "setups": result,
        "front_adds_ms": added,
        "front_adds_fraction_of_median": round(
            added["median_ms"] / result["gunicorn alone"]["median_ms"], 4
        ),
        "samples": sum(len(v) for v in latencies.values()),
        "median_of_round_medians_ms": {
            name: statistics.median(
                statistics.median(values[i : i + args.requests])
                for i in range(0, len(values), args.requests)
            )
            for name, values in latencies.items()
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({"setups": result, "front_adds_ms": added}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
