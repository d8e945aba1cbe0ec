"""Peak worker memory under many large images at once (a benchmark, not a test).

Starts the server of the `gen3d` installed in this interpreter on 127.0.0.1, sends
CONCURRENCY parallel requests of one 4096 x 4096 RGBA PNG (a gradient and a disc, about
70 kB compressed) and reads the worker's VmHWM (peak RSS) and VmRSS afterwards from /proc.

    python tools/memory_probe.py --concurrency 32 --label after --out RESULT.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from gen3d.benchmarks.payloads import large_rgba_png
from gen3d.serve.launcher import gunicorn_workers, start_server


def status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for {pid}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--side", type=int, default=4096)
    parser.add_argument("--label", default="run", help="a name for this run in the JSON")
    parser.add_argument("--out", type=Path, help="append the result to this JSON file")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server")
    args = parser.parse_args()
    body = large_rgba_png(args.side)
    env = {
        "GEN3D_WARMUP": "0",
        "GEN3D_MAX_QUEUE": str(max(64, args.concurrency)),
        "MODEL_SERVER_WORKERS": "1",  # one worker: its peak is the figure
    }
    env.update(dict(item.split("=", 1) for item in args.env))
    server = start_server(env, log_path=Path(f"/tmp/gen3d-memory-probe-{os.getpid()}.log"))
    try:
        server.wait_ready(120)
        (pid,) = gunicorn_workers(server)  # MODEL_SERVER_WORKERS=1 below
        baseline = status_mb(pid, "VmHWM")
        started = time.monotonic()
        with ThreadPoolExecutor(args.concurrency) as pool:
            statuses = list(
                pool.map(
                    lambda _: (
                        requests.post(
                            server.url + "/invocations",
                            data=body,
                            headers={"Content-Type": "image/png"},
                            timeout=600,
                        ).status_code
                    ),
                    range(args.concurrency),
                )
            )
        result = {
            "label": args.label,
            "concurrency": args.concurrency,
            "image": f"{args.side}x{args.side} RGBA PNG, {len(body)} bytes",
            "statuses": sorted(set(statuses)),
            "baseline_peak_rss_mb": round(baseline, 1),
            "peak_rss_mb": round(status_mb(pid, "VmHWM"), 1),
            "rss_after_mb": round(status_mb(pid, "VmRSS"), 1),
            "wall_s": round(time.monotonic() - started, 2),
            "server_env": env,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "load_average": os.getloadavg(),
        }
    finally:
        server.stop(10)
    print(json.dumps(result))
    if args.out:
        runs = json.loads(args.out.read_text()) if args.out.exists() else []
        args.out.write_text(json.dumps([*runs, result], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
