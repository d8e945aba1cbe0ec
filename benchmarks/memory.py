"""Memory suite: a worker's peak memory under many large images at once.

Starts our server (the image's set-up) with one worker on 127.0.0.1, sends `concurrency`
parallel requests of one `side` x `side` RGBA PNG (a smooth photo with a disc for alpha:
about 90 kB on the wire at 4096, 64 MB once decoded) and reads the worker's peak resident
memory (VmHWM) before and after, and its resident memory (VmRSS) afterwards, from /proc.
What it shows: whether decoding is bounded (GEN3D_DECODE_CONCURRENCY, images reduced
before the model sees them, two malloc arenas), not how fast anything is.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests

from gen3d.benchmarks.environment import fingerprint
from gen3d.benchmarks.payloads import large_rgba_png
from gen3d.benchmarks.results_io import Recorder
from gen3d.benchmarks.suite_config import SuiteConfig
from gen3d.serve.local_server import gunicorn_workers, start_server


@dataclass(kw_only=True)
class MemoryConfig(SuiteConfig):
    concurrency: int = 32
    side: int = 4096
    extra_env: dict[str, str] = field(default_factory=dict)  # applied last
    ready_timeout_s: float = 120.0


def status_mb(pid: int, field_name: str) -> float:
    """A /proc/<pid>/status memory figure (VmHWM, VmRSS) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field_name} for process {pid}")


def run_memory_suite(
    config: MemoryConfig, out_root: Path, progress: Callable[[str], None] = print
) -> Path:
    """One loaded round; OUT/<device>/memory_<backend>.json."""
    if config.concurrency < 1 or config.side < 16:
        raise ValueError("concurrency must be >= 1 and side >= 16")
    body = large_rgba_png(config.side)
    env = {
        "GEN3D_BACKEND": config.backend,
        "GEN3D_DEVICE": config.device,
        "GEN3D_WARMUP": "0",
        "GEN3D_MAX_QUEUE": str(max(64, config.concurrency)),
        "MODEL_SERVER_WORKERS": "1",  # one worker: its peak is the figure
    }
    if config.model_dir is not None:
        env["GEN3D_MODEL_DIR"] = str(config.model_dir)
    env.update(config.extra_env)
    recorder = Recorder(
        "memory", config.name, fingerprint(config.device, config.instance_type), config.document()
    )
    with tempfile.TemporaryDirectory(prefix="gen3d-memory-") as tmp:
        server = start_server(env, log_path=Path(tmp) / "server.log")
        try:
            server.wait_ready(config.ready_timeout_s)
            (pid,) = gunicorn_workers(server)
            baseline = status_mb(pid, "VmHWM")
            started = time.monotonic()

            def post(_: int) -> int:
                return requests.post(
                    server.url + "/invocations",
                    data=body,
                    headers={"Content-Type": "image/png"},
                    timeout=600,
                ).status_code

            with ThreadPoolExecutor(config.concurrency) as pool:
                statuses = list(pool.map(post, range(config.concurrency)))
            row = {
                "concurrency": config.concurrency,
                "image": f"{config.side}x{config.side} RGBA PNG, {len(body)} bytes",
                "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
                "baseline_peak_rss_mb": round(baseline, 1),
                "peak_rss_mb": round(status_mb(pid, "VmHWM"), 1),
                "rss_after_mb": round(status_mb(pid, "VmRSS"), 1),
                "same_worker": gunicorn_workers(server) == {pid},
                "wall_s": round(time.monotonic() - started, 2),
                "server_env": env,
                "cpus": os.cpu_count(),
            }
        finally:
            server.stop(10)
    recorder.add(row)
    progress(
        f"  {config.concurrency} x {config.side}²: peak {row['peak_rss_mb']} MB "
        f"(baseline {row['baseline_peak_rss_mb']} MB), statuses {row['statuses']}"
    )
    return recorder.write(out_root)
