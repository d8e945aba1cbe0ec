"""Latency suite: one client, one image size, the default server — what a user sees.

Start the real server, time process start -> first /ping 200, send REQUESTS sequential
RGBA PNG -> GLB requests of SIZE x SIZE pixels, and read the peak RSS (VmHWM) of the
gunicorn master and worker from /proc afterwards.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

from gen3d.benchmarks import payloads
from gen3d.benchmarks.environment import fingerprint
from gen3d.benchmarks.inprocess import peak_rss_mb
from gen3d.benchmarks.results_io import Recorder
from gen3d.benchmarks.stats import summarize
from gen3d.serve.local_server import gunicorn_master, gunicorn_workers, start_server


@dataclass
class LatencyConfig:
    image_size: int = 512
    requests: int = 30
    backend: str = "silhouette"


def run_latency_suite(config: LatencyConfig, out_root: Path) -> Path:
    recorder = Recorder("latency", config.backend, fingerprint("cpu"), asdict(config))
    body = payloads.rgba_png(config.image_size)
    started = time.monotonic()
    server = start_server(env={"GEN3D_BACKEND": config.backend})
    try:
        server.wait_ready(120)
        ready_s = time.monotonic() - started
        url = server.url + "/invocations"
        headers = {"Content-Type": "image/png", "Accept": "model/gltf-binary"}
        seconds = []
        for _ in range(config.requests + 2):  # the first two warm the connection path
            t0 = time.perf_counter()
            response = requests.post(url, data=body, headers=headers, timeout=60)
            response.raise_for_status()
            seconds.append(time.perf_counter() - t0)
        master = gunicorn_master(server)
        pids = [*([master] if master else []), *sorted(gunicorn_workers(server))]
        recorder.add(
            {
                "start_to_ready_s": round(ready_s, 3),
                "latency_s": summarize(seconds[2:]),
                "glb_bytes": len(response.content),
                "peak_rss_mb": {str(p): peak_rss_mb(p) for p in pids},
            }
        )
    finally:
        server.stop()
    return recorder.write(out_root)
