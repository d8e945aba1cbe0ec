"""Peers suite: our server vs LitServe on the same backend, same model dir, same run.

Both servers are up at once (each idles while the other is loaded) and every
concurrency level runs on ours, then on the peer, so drift in the machine's load hits
both alike. Both receive the same JSON request and return the same JSON asset; the peer
gets our max_batch_size and its batch_timeout = our GEN3D_MAX_BATCH_DELAY_MS.
Ratios: ours / peer for throughput (>= 1 is better) and for p99 (<= 1 is better).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

from benchmarks import payloads
from benchmarks.backends import prepare_model_dir, server_env, settings_for
from benchmarks.environment import fingerprint
from benchmarks.loadgen import Target, run_load
from benchmarks.results_io import Recorder
from serve.launcher import REPO_ROOT, free_port, start_server

JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


@dataclass
class PeersConfig:
    backend: str = "silhouette"
    size: str = "tiny"
    device: str = "cpu"
    precision: str = "fp32"
    levels: list[int] = field(default_factory=lambda: [1, 4, 16])
    max_batch_size: int = 8
    max_batch_delay_ms: float = 10.0
    duration_s: float = 5.0
    max_requests: int = 300
    warmup_s: float = 1.0
    model_dir: Path | None = None
    instance_type: str | None = None
    ready_timeout_s: float = 300.0
    torch_threads: int | None = None  # CPU: OMP_NUM_THREADS of both servers (see server.py)

    @property
    def name(self) -> str:
        return f"{self.backend}-{self.size}" if self.backend == "proxy" else self.backend


class LitServeProcess:
    """benchmarks.litserve_peer in its own session, so stop() reaches all its processes."""

    def __init__(self, config: PeersConfig, model_dir: Path, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.litserve_peer",
            "--backend",
            config.backend,
            "--model-dir",
            str(model_dir),
            "--device",
            config.device,
            "--precision",
            config.precision,
            "--max-batch-size",
            str(config.max_batch_size),
            "--batch-timeout",
            str(config.max_batch_delay_ms / 1000),
            "--port",
            str(self.port),
        ]
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        if config.torch_threads:
            env["OMP_NUM_THREADS"] = str(config.torch_threads)
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env=env,
                start_new_session=True,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout_s: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"LitServe exited with {self.process.returncode}:\n"
                    f"{self.log_path.read_text(errors='replace')[-3000:]}"
                )
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"LitServe not ready after {timeout_s:.0f} s")

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.process.poll() is not None:
            return
        group = self.process.pid  # its own session: the group id is its pid
        os.killpg(group, signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(group, signal.SIGKILL)
            self.process.wait()
        try:  # children that outlived the parent's graceful shutdown
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass


def listening_address(port: int) -> str | None:
    """The local address a TCP socket LISTENs on for `port`, from /proc/net/tcp{,6}."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and int(port_hex, 16) == port:
                if len(address) == 8:
                    octets = bytes.fromhex(address)[::-1]
                    return ".".join(str(b) for b in octets)
                return (
                    "::1"
                    if address.endswith("01000000") and set(address[:24]) == {"0"}
                    else address
                )
    return None


def run_peers_suite(
    config: PeersConfig, out_root: Path, progress: Callable[[str], None] = print
) -> Path:
    import litserve

    env = fingerprint(config.device, config.instance_type)
    env["litserve"] = litserve.__version__
    doc_config: dict[str, Any] = asdict(config)
    doc_config["model_dir"] = str(config.model_dir) if config.model_dir else None
    doc_config["image_size"] = payloads.IMAGE_SIZE
    recorder = Recorder("peers", config.name, env, doc_config)
    model_dir = prepare_model_dir(config.backend, config.size, config.model_dir)
    if config.backend == "silhouette":
        model_dir.mkdir(parents=True, exist_ok=True)
    settings = settings_for(
        config.backend,
        model_dir,
        config.device,
        config.precision,
        config.max_batch_size,
        max_batch_delay_ms=config.max_batch_delay_ms,
        max_queue=max(64, 2 * max(config.levels)),
    )
    body = payloads.json_body()
    with tempfile.TemporaryDirectory(prefix="gen3d-peers-") as tmp:
        ours_env = server_env(settings)
        if config.torch_threads:
            ours_env["OMP_NUM_THREADS"] = str(config.torch_threads)
        ours = start_server(ours_env, log_path=Path(tmp) / "ours.log")
        peer = LitServeProcess(config, model_dir, Path(tmp) / "litserve.log")
        try:
            ours.wait_ready(config.ready_timeout_s)
            peer.wait_ready(config.ready_timeout_s)
            bound = {"ours": listening_address(ours.port), "litserve": listening_address(peer.port)}
            recorder.config["bound_to"] = bound
            for server, address in bound.items():
                if address != "127.0.0.1":
                    raise RuntimeError(f"{server} listens on {address}, not 127.0.0.1")
            targets = {
                "ours": Target(ours.url, "/invocations", body, JSON_HEADERS, "/ping", None),
                "litserve": Target(peer.url, "/invocations", body, JSON_HEADERS, "/health", None),
            }
            for level in config.levels:
                row: dict[str, Any] = {"backend": config.backend, "concurrency": level}
                for server, target in targets.items():
                    row[server] = run_load(
                        target, level, config.duration_s, config.max_requests, config.warmup_s, 0.05
                    )
                row.update(ratios(row["ours"], row["litserve"]))
                recorder.add(row)
                progress(_line(config.name, row))
        finally:
            ours.stop()
            peer.stop()
    return recorder.write(out_root)


def ratios(ours: dict[str, Any], peer: dict[str, Any]) -> dict[str, float | None]:
    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    return {
        "throughput_ratio": ratio(ours.get("throughput_per_s"), peer.get("throughput_per_s")),
        "p99_ratio": ratio(ours["latency_ms"].get("p99"), peer["latency_ms"].get("p99")),
    }


def _line(name: str, row: dict[str, Any]) -> str:
    o, p = row["ours"], row["litserve"]
    tr, pr = row["throughput_ratio"], row["p99_ratio"]
    return (
        f"  {name} c={row['concurrency']:>2}: ours {o['throughput_per_s']:.2f}/s "
        f"p99 {o['latency_ms'].get('p99', float('nan')):.0f} ms | LitServe "
        f"{p['throughput_per_s']:.2f}/s p99 {p['latency_ms'].get('p99', float('nan')):.0f} ms"
        f" | ratio thr {_round(tr)} p99 {_round(pr)}"
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
