"""Peers suite: our server vs LitServe on the same backend, same model dir, same run.

Both servers are up at once (each idles while the other is loaded) and every
concurrency level runs on ours, then on the peer, so drift in the machine's load hits
both alike. Both receive the same JSON request and return the same JSON asset; the peer
gets our max_batch_size and its batch_timeout = our GEN3D_MAX_BATCH_DELAY_MS.
Ratios: ours / peer for throughput (>= 1 is better) and for p99 (<= 1 is better).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gen3d.benchmarks import payloads
from gen3d.benchmarks.backends import prepare_model_dir, server_env, settings_for
from gen3d.benchmarks.environment import fingerprint
from gen3d.benchmarks.loadgen import Target, run_load
from gen3d.benchmarks.results_io import Recorder
from gen3d.benchmarks.suite_config import ServedSuiteConfig
from gen3d.serve.launcher import ManagedProcess, free_port, start_server

JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


@dataclass(kw_only=True)
class PeersConfig(ServedSuiteConfig):
    """Both servers get the same settings; torch_threads is OMP_NUM_THREADS of both."""


def start_litserve(config: PeersConfig, model_dir: Path, log_path: Path) -> ManagedProcess:
    """gen3d.benchmarks.litserve_peer as a managed process (its own session, /health)."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "gen3d.benchmarks.litserve_peer",
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
        str(port),
    ]
    env = {"OMP_NUM_THREADS": str(config.torch_threads)} if config.torch_threads else {}
    return ManagedProcess(cmd, port, log_path, env=env, health_path="/health", name="LitServe")


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
        peer = start_litserve(config, model_dir, Path(tmp) / "litserve.log")
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
