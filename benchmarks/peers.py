"""Peers suite: our server vs two peers on the same backend, same model dir, same run.

The peers: LitServe (its own dynamic batching, given our max_batch_size and, as its
batch_timeout, our GEN3D_MAX_BATCH_DELAY_MS) and the AWS-BYOC-style server
(gen3d.benchmarks.byoc_peer: Flask under gunicorn sync workers, one request at a time
per worker, no batching, no queue). All three are up at once and every concurrency
level runs on each in turn, so drift in the machine's load hits all alike; while one is
measured the other two are paused (SIGSTOP), so none of their idle work runs beside it
(`pause_idle`). All receive the same JSON request and
return the same JSON asset. Ratios: ours / peer for throughput (>= 1 is better) and for
p99 (<= 1 is better); `throughput_ratio`/`p99_ratio` are vs LitServe (as before the
BYOC peer was added), `byoc_throughput_ratio`/`byoc_p99_ratio` vs the BYOC peer, and
`ceiling_ratio` (ours) and `byoc_ceiling_ratio` vs the in-process ceiling: the same
requests' work with no server, in as many processes as the BYOC peer has workers
(gen3d.benchmarks.ceiling), measured in turn with the servers like a fourth one.

Which server goes first turns with each level (and with `order_offset`, which
`gen3d bench peers --repeats` sets to the run's number): with a fixed order, ours always ran
first at a level, right after the previous level's load, and any effect of the position
landed on one server's ratios in every run. Each row records its `order`.

Each server's time at a level is cut into `slices` windows, taken in turn with the other
servers' and in the reverse order every other round (A B C, C B A, A B C, ...): the
speed of this shared machine's cores moves by up to 2.2x for tens of seconds at a time
with nothing else running (docs/measurements.md), so one 8 s window per server let a
slow spell land on one server alone; pooled over interleaved slices, all see it alike.
Each row records its `slices`.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gen3d.benchmarks import payloads
from gen3d.benchmarks.backends import prepare_model_dir, server_env
from gen3d.benchmarks.byoc_peer import byoc_env, byoc_workers, has_front, start_byoc
from gen3d.benchmarks.ceiling import InProcessCeiling
from gen3d.benchmarks.environment import fingerprint
from gen3d.benchmarks.loadgen import LoadWindow, Target, collect_load, summarize_windows
from gen3d.benchmarks.results_io import Recorder
from gen3d.benchmarks.suite_config import PeerSuiteConfig
from gen3d.serve.local_server import ManagedProcess, free_port, start_server

JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
PEERS = ("litserve", "byoc")  # started after ours; measured in a turning order
CEILING = "ceiling"  # the in-process ceiling (gen3d.benchmarks.ceiling), measured in turn
LEVELS = [1, 4, 16, 64]  # 64: past what any server here turns around within a second


@dataclass(kw_only=True)
class PeersConfig(PeerSuiteConfig):
    """All servers get the same settings; torch_threads is OMP_NUM_THREADS of all."""

    levels: list[int] = field(default_factory=lambda: list(LEVELS))
    # where the rotation of the measuring order starts (see the module's note)
    order_offset: int = 0
    # windows per server and level, interleaved (see the module's note); the level's
    # duration_s is shared among them
    slices: int = 4


def measuring_order(names: list[str], level_index: int, offset: int = 0) -> list[str]:
    """`names` rotated by level and offset: each server goes first in turn."""
    if not names:
        return []
    turn = (level_index + offset) % len(names)
    return names[turn:] + names[:turn]


def start_litserve(config: PeerSuiteConfig, model_dir: Path, log_path: Path) -> ManagedProcess:
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
    doc_config = config.document()
    doc_config["image_size"] = payloads.IMAGE_SIZE
    recorder = Recorder("peers", config.name, env, doc_config)
    model_dir = prepare_model_dir(config.backend, config.size, config.model_dir)
    settings = config.settings(model_dir, max_queue=max(64, 2 * max(config.levels)))
    body = payloads.json_body()
    recorder.config["byoc_workers"] = byoc_workers(config)
    recorder.config["byoc_front"] = "nginx" if has_front() else "none"
    with tempfile.TemporaryDirectory(prefix="gen3d-peers-") as tmp:
        ours_env = server_env(settings)
        if config.torch_threads:
            ours_env["OMP_NUM_THREADS"] = str(config.torch_threads)
        servers = start_servers(config, model_dir, ours_env, Path(tmp), PEERS)
        processes = byoc_workers(config)
        ceiling = InProcessCeiling(
            byoc_env(config, model_dir), processes, Path(tmp) / "ceiling.log"
        )
        recorder.config["ceiling_processes"] = processes
        try:
            ceiling.wait_ready(config.ready_timeout_s)
            recorder.config["bound_to"] = bound_addresses(servers)
            targets: dict[str, Target | None] = {
                name: Target(s.url, "/invocations", body, JSON_HEADERS, s.health_path, None)
                for name, s in servers.items()
            }
            targets[CEILING] = None
            for index, level in enumerate(config.levels):

                def measure(name: str, target: Target | None, level: int = level) -> LoadWindow:
                    if target is None:  # the ceiling: its share of the level's time
                        return ceiling.measure(config.duration_s / config.slices, level)
                    return slice_of_load(config, target, level)

                row: dict[str, Any] = {"backend": config.backend, "concurrency": level}
                row |= measure_in_turn(
                    servers,
                    targets,
                    index,
                    config,
                    measure,
                    config.order_offset,
                    config.slices,
                    summarize_windows,
                )
                row.update(ratios(row["ours"], row["litserve"]))
                row.update(ratios(row["ours"], row["byoc"], prefix="byoc_"))
                row["ceiling_ratio"] = ratios(row["ours"], row[CEILING])["throughput_ratio"]
                row["byoc_ceiling_ratio"] = ratios(row["byoc"], row[CEILING])["throughput_ratio"]
                recorder.add(row)
                progress(_line(config.name, row))
        finally:
            ceiling.stop()
            for server in servers.values():
                server.stop()
    return recorder.write(out_root)


def start_servers(
    config: PeerSuiteConfig,
    model_dir: Path,
    ours_env: dict[str, str],
    log_dir: Path,
    peers: tuple[str, ...],
) -> dict[str, ManagedProcess]:
    """Ours and the named peers ("litserve", "byoc"), in that order, all ready and each
    checked (from the kernel's table) to listen on 127.0.0.1 only: benchmarks never open
    a port to the network. On any failure the ones already started are stopped."""
    starters = {"litserve": start_litserve, "byoc": start_byoc}
    servers: dict[str, ManagedProcess] = {}
    try:
        servers["ours"] = start_server(ours_env, log_path=log_dir / "ours.log")
        for name in peers:  # all start at once: each loads its model while the others do
            servers[name] = starters[name](config, model_dir, log_dir / f"{name}.log")
        for server in servers.values():
            server.wait_ready(config.ready_timeout_s)
        for name, address in bound_addresses(servers).items():
            if address != "127.0.0.1":
                raise RuntimeError(f"{name} listens on {address}, not 127.0.0.1")
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return servers


def slice_sequence(order: list[str], slices: int) -> list[str]:
    """Which server is measured when: `order`, then reversed, and so on, `slices` rounds
    (A B C C B A A B C ...). Over an even number of rounds every server's mean position
    is the same, so a drift that is linear in time hits all alike."""
    return [name for r in range(slices) for name in (order if r % 2 == 0 else order[::-1])]


def slice_of_load(config: PeersConfig, target: Target, level: int) -> LoadWindow:
    """One of a server's `config.slices` windows at `level`: its share of the duration,
    request cap and minimum count (2 x level over all slices, for the percentiles)."""
    return collect_load(
        target,
        level,
        config.duration_s / config.slices,
        max(1, config.max_requests // config.slices),
        config.warmup_s,
        0.05,
        min_requests=-(-2 * level // config.slices),
    )


def measure_in_turn(
    servers: dict[str, ManagedProcess],
    targets: Mapping[str, Target | None],
    level_index: int,
    config: PeerSuiteConfig,
    measure: Callable[[str, Any], Any],
    offset: int = 0,
    slices: int = 1,
    pool: Callable[[list[Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One level on every server in turn (drift hits all alike), each measured alone and
    each going first in turn: {"order": [...], name: what `measure(name, target)` gave}.

    With `slices` > 1 each server is measured that many times, the order reversed every
    other round, and `pool` makes one result of each server's list of measurements."""
    if slices < 1 or (slices > 1 and pool is None):
        raise ValueError("slices must be >= 1, and more than one needs a pool")
    order = measuring_order(list(targets), level_index, offset)
    parts: dict[str, list[Any]] = {name: [] for name in order}
    for name in slice_sequence(order, slices):
        with measured_alone(servers, name, config):
            parts[name].append(measure(name, targets[name]))
    row: dict[str, Any] = {"order": order, "slices": slices}
    for name in order:
        row[name] = pool(parts[name]) if pool else parts[name][0]
    return row


@contextmanager
def measured_alone(
    servers: dict[str, ManagedProcess], name: str, config: PeerSuiteConfig
) -> Iterator[None]:
    """While `name` is measured, the other servers are paused (`config.pause_idle`), so
    none of their idle work runs beside it: LitServe polls its queues when idle (13 % of
    a core), which on 2 cores took CPU from the server measured next to it.
    They are resumed afterwards, whatever happened."""
    others = [s for n, s in servers.items() if n != name] if config.pause_idle else []
    try:
        for server in others:
            server.pause()
        if name in servers:  # not the in-process ceiling
            servers[name].wait_ready(config.ready_timeout_s)  # it may have just been resumed
        yield
    finally:
        for server in others:
            server.resume()


def bound_addresses(servers: dict[str, ManagedProcess]) -> dict[str, str | None]:
    """Where each server listens, read from the kernel (recorded with the results)."""
    return {name: listening_address(server.port) for name, server in servers.items()}


def ratios(ours: dict[str, Any], peer: dict[str, Any], prefix: str = "") -> dict[str, float | None]:
    """ours / peer: throughput (>= 1 is better) and p99 (<= 1 is better)."""

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    return {
        f"{prefix}throughput_ratio": ratio(
            ours.get("throughput_per_s"), peer.get("throughput_per_s")
        ),
        f"{prefix}p99_ratio": ratio(ours["latency_ms"].get("p99"), peer["latency_ms"].get("p99")),
    }


def _line(name: str, row: dict[str, Any]) -> str:
    parts = [f"  {name} c={row['concurrency']:>2}:"]
    names = (("ours", "ours"), ("litserve", "LitServe"), ("byoc", "BYOC"), (CEILING, CEILING))
    for server, label in names:
        r = row[server]
        parts.append(
            f"{label} {r['throughput_per_s']:.2f}/s p99 "
            f"{r['latency_ms'].get('p99', float('nan')):.0f} ms"
        )
    return (
        " | ".join(parts)
        + f" | ours/LitServe thr {_round(row['throughput_ratio'])} p99 {_round(row['p99_ratio'])}"
        + f" | ours/BYOC thr {_round(row['byoc_throughput_ratio'])}"
        + f" p99 {_round(row['byoc_p99_ratio'])}"
        + f" | ours/ceiling thr {_round(row['ceiling_ratio'])}"
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
