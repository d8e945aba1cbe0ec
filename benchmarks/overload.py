"""Overload suite: goodput vs offered load, with clients that retry a refusal at once.

At each level, N client threads (127.0.0.1 only) post the benchmarks' JSON request in a
loop; a 503 or a connection error is retried immediately, as an impatient client does
(Retry-After is ignored on purpose), and any other answer ends that request. Goodput is
the number of 200s completed per second in a measurement window that starts after a
short warm-up and ends after `duration_s` or `max_requests` answers (of any status),
whichever comes first. A server that sheds load cheaply keeps its goodput as clients
are added; one that spends its CPU on work it then refuses (or on the retries' churn)
loses it. A prober GETs the health route during the window: a load balancer's health
check must still be answered under overload.

Per level: goodput, refusals and other answers per second, latency of successful requests
from the first attempt to the success (retries included) and of the successful attempt
alone, attempts per success, and the prober's latency. Summary per server: peak goodput
across levels and goodput at the largest level / peak ("ratio_to_peak"; 1 = no collapse).

Ours is the image's gunicorn set-up (gen3d.serve.local_server.start_server) with the
backend's settings, `max_queue` (GEN3D_MAX_QUEUE) and any extra environment; with
`peers`, LitServe and the AWS-BYOC-style peer (gen3d.benchmarks.byoc_peer) are loaded the
same way, each level on ours, then LitServe, then BYOC.
"""

from __future__ import annotations

import http.client
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from math import nan
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gen3d.benchmarks import payloads
from gen3d.benchmarks.backends import prepare_model_dir, server_env
from gen3d.benchmarks.byoc_peer import byoc_workers
from gen3d.benchmarks.environment import fingerprint
from gen3d.benchmarks.loadgen import Target
from gen3d.benchmarks.peers import (
    JSON_HEADERS,
    PEERS,
    bound_addresses,
    measure_in_turn,
    start_servers,
)
from gen3d.benchmarks.results_io import Recorder
from gen3d.benchmarks.stats import summarize, window_rates
from gen3d.benchmarks.suite_config import PeerSuiteConfig

LEVELS = [4, 16, 64, 100]  # 100: past our default queue (64), where shedding starts
REFUSED = 503


@dataclass(kw_only=True)
class OverloadConfig(PeerSuiteConfig):
    levels: list[int] = field(default_factory=lambda: list(LEVELS))
    duration_s: float = 8.0
    # answers of any status in one level's window; refusals come back in about a
    # millisecond, so this bounds the count when a server refuses thousands per second
    max_requests: int = 20_000
    max_queue: int | None = None  # GEN3D_MAX_QUEUE of ours; None: the server's default
    extra_env: dict[str, str] = field(default_factory=dict)  # more environment for ours
    peers: bool = False  # also LitServe and the BYOC peer
    ping_interval_s: float = 0.05
    request_timeout_s: float = 60.0


# ---------------------------------------------------------------- the load


@dataclass
class _Level:
    """What the threads of one level share. Each client appends to its own lists (no
    lock on the hot path: the client's CPU is taken from the servers on this machine)."""

    stop: threading.Event = field(default_factory=threading.Event)
    window_open: threading.Event = field(default_factory=threading.Event)
    # per client: (started, finished, status) of every attempt
    attempts: list[list[tuple[float, float, int | str]]] = field(default_factory=list)
    # per client: (first attempt started, success finished, attempts) of every 200
    successes: list[list[tuple[float, float, int]]] = field(default_factory=list)
    # (started, milliseconds, status) of every probe
    pings: list[tuple[float, float, int | str]] = field(default_factory=list)


def _connection(target: Target, timeout_s: float) -> http.client.HTTPConnection:
    parts = urlsplit(target.base_url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)


def _exchange(
    conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None, headers: dict
) -> int | str:
    """One request on a kept-alive connection (http.client reopens it after a close)."""
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException) as exc:
        conn.close()  # the next request opens a fresh connection
        return f"exception:{type(exc).__name__}"


def _client(target: Target, level: _Level, index: int, timeout_s: float) -> None:
    attempts, successes = level.attempts[index], level.successes[index]
    conn = _connection(target, timeout_s)
    clock = time.perf_counter
    while not level.stop.is_set():
        first = clock()
        tries = 0
        while not level.stop.is_set():
            started = clock()
            status = _exchange(conn, "POST", target.path, target.body, target.headers)
            finished = clock()
            tries += 1
            attempts.append((started, finished, status))
            if status == 200:
                successes.append((first, finished, tries))
                break
            if status != REFUSED and not isinstance(status, str):
                break  # a final answer (4xx, 500, 504): this request is over, send the next
    conn.close()


def _prober(target: Target, level: _Level, interval_s: float, timeout_s: float) -> None:
    conn = _connection(target, timeout_s)
    level.window_open.wait()
    while not level.stop.is_set():
        started = time.perf_counter()
        status = _exchange(conn, "GET", target.health_path, None, {})
        elapsed = time.perf_counter() - started
        level.pings.append((started, elapsed * 1000, status))
        level.stop.wait(max(0.0, interval_s - elapsed))
    conn.close()


def run_overload_level(
    target: Target,
    clients: int,
    duration_s: float,
    max_requests: int,
    warmup_s: float = 1.0,
    ping_interval_s: float | None = 0.05,
    timeout_s: float = 60.0,
) -> dict[str, Any]:
    """`clients` retrying clients on `target` for one window; the level's figures.

    Warm-up lasts `warmup_s` and until every client has had one answer (the queue and
    the retry loop are then in their steady state), cut at max(warmup_s, duration_s), so
    a level lasts at most that plus the window plus the answers still in flight.
    """
    level = _Level()
    level.attempts = [[] for _ in range(clients)]
    level.successes = [[] for _ in range(clients)]
    threads = [
        threading.Thread(target=_client, args=(target, level, i, timeout_s), daemon=True)
        for i in range(clients)
    ]
    if ping_interval_s:
        threads.append(
            threading.Thread(
                target=_prober, args=(target, level, ping_interval_s, timeout_s), daemon=True
            )
        )

    def answered() -> int:
        return sum(len(a) for a in level.attempts)

    began = time.perf_counter()
    for thread in threads:
        thread.start()
    warmup_cap = max(warmup_s, duration_s)
    while True:
        elapsed = time.perf_counter() - began
        if elapsed >= warmup_cap or (elapsed >= warmup_s and answered() >= clients):
            break
        time.sleep(0.01)
    start = time.perf_counter()
    before = answered()
    level.window_open.set()
    while time.perf_counter() - start < duration_s and answered() - before < max_requests:
        time.sleep(0.01)
    end = time.perf_counter()
    level.stop.set()
    level.window_open.set()
    for thread in threads:  # each finishes the attempt it is in: nothing is left queued
        thread.join(timeout_s + 5)
    result = _summarize(level, start, end)
    result.update(clients=clients, warmup_s=round(start - began, 3))
    return result


def _summarize(level: _Level, start: float, end: float) -> dict[str, Any]:
    seconds = end - start
    attempts = [a for client in level.attempts for a in client if start <= a[1] <= end]
    successes = [s for client in level.successes for s in client if start <= s[1] <= end]
    ok = [a for a in attempts if a[2] == 200]
    refused = [a for a in attempts if a[2] == REFUSED]
    connection_errors = sum(1 for a in attempts if isinstance(a[2], str))
    other: dict[str, int] = {}
    for a in attempts:
        if a[2] not in (200, REFUSED) and not isinstance(a[2], str):
            other[str(a[2])] = other.get(str(a[2]), 0) + 1
    errors: dict[str, int] = {}
    for a in attempts:
        if isinstance(a[2], str):
            errors[a[2]] = errors.get(a[2], 0) + 1

    def rate(count: int) -> float | None:
        return count / seconds if seconds > 0 else None

    result: dict[str, Any] = {
        "window_s": round(seconds, 3),
        "answers": len(attempts),
        "ok": len(ok),
        "refused": len(refused),
        "connection_errors": connection_errors,
        "other_statuses": other,
        "connection_error_kinds": errors,
        "goodput_per_s": rate(len(ok)),
        "refused_per_s": rate(len(refused)),
        "connection_errors_per_s": rate(connection_errors),
        "attempts_per_s": rate(len(attempts)),
        "goodput_windows_per_s": summarize(window_rates([a[1] for a in ok], start, end, 1.0)),
        # what a client waits for its result: first attempt to success, retries included
        "latency_ms": summarize([(s[1] - s[0]) * 1000 for s in successes]),
        # the successful attempt alone, and how quickly a refusal comes back
        "attempt_latency_ms": summarize([(a[1] - a[0]) * 1000 for a in ok]),
        "refused_latency_ms": summarize([(a[1] - a[0]) * 1000 for a in refused]),
        "attempts_per_success": summarize([s[2] for s in successes]),
    }
    pings = [p for p in level.pings if start <= p[0] <= end]
    if pings:
        ping_ok = [ms for _, ms, status in pings if status == 200]
        result["ping_ms"] = summarize(ping_ok)
        result["ping_failures"] = len(pings) - len(ping_ok)
    return result


# ---------------------------------------------------------------- the suite


def summary(rows: list[dict[str, Any]], server: str) -> dict[str, Any]:
    """Peak goodput across levels, and goodput at the largest level relative to it."""
    measured = [(r["clients"], r[server]["goodput_per_s"]) for r in rows if server in r]
    measured = [(c, g) for c, g in measured if g is not None]
    if not measured:
        return {}
    peak_clients, peak = max(measured, key=lambda m: m[1])
    largest, at_largest = max(measured, key=lambda m: m[0])
    return {
        "peak_goodput_per_s": peak,
        "peak_at_clients": peak_clients,
        "largest_level": largest,
        "goodput_at_largest_per_s": at_largest,
        "ratio_to_peak": at_largest / peak if peak else None,
    }


def ours_env(config: OverloadConfig, model_dir: Path) -> dict[str, str]:
    """Our server's environment: the backend's settings, the queue, then extra_env."""
    extra: dict[str, Any] = {}
    if config.max_queue is not None:
        extra["max_queue"] = config.max_queue
    settings = config.settings(model_dir, **extra)
    env = server_env(settings)
    if config.torch_threads:
        env["OMP_NUM_THREADS"] = str(config.torch_threads)
    env.update(config.extra_env)  # last: a comparison may override any setting above
    return env


def run_overload_suite(
    config: OverloadConfig, out_root: Path, progress: Callable[[str], None] = print
) -> Path:
    env = fingerprint(config.device, config.instance_type)
    peers = PEERS if config.peers else ()
    if "litserve" in peers:
        import litserve

        env["litserve"] = litserve.__version__
    doc_config = config.document()
    doc_config["image_size"] = payloads.IMAGE_SIZE
    recorder = Recorder("overload", config.name, env, doc_config)
    model_dir = prepare_model_dir(config.backend, config.size, config.model_dir)
    launch_env = ours_env(config, model_dir)
    recorder.config["ours_max_queue"] = int(launch_env["GEN3D_MAX_QUEUE"])
    if peers:
        recorder.config["byoc_workers"] = byoc_workers(config)
    body = payloads.json_body()
    with tempfile.TemporaryDirectory(prefix="gen3d-overload-") as tmp:
        servers = start_servers(config, model_dir, launch_env, Path(tmp), peers)
        try:
            recorder.config["bound_to"] = bound_addresses(servers)
            recorder.config["health_paths"] = {n: s.health_path for n, s in servers.items()}
            targets = {
                name: Target(s.url, "/invocations", body, JSON_HEADERS, s.health_path, None)
                for name, s in servers.items()
            }
            for index, clients in enumerate(config.levels):

                def level(name: str, target: Target, clients: int = clients) -> dict[str, Any]:
                    result = run_overload_level(
                        target,
                        clients,
                        config.duration_s,
                        config.max_requests,
                        config.warmup_s,
                        config.ping_interval_s,
                        config.request_timeout_s,
                    )
                    progress(_line(config.name, name, result))
                    return result

                row: dict[str, Any] = {"backend": config.backend, "clients": clients}
                row |= measure_in_turn(servers, targets, index, config, level)
                recorder.add(row)
        finally:
            for server in servers.values():
                server.stop()
    recorder.summary = {name: summary(recorder.results, name) for name in ("ours", *peers)}
    for name, figures in recorder.summary.items():
        progress(_summary_line(config.name, name, figures))
    return recorder.write(out_root)


def _summary_line(name: str, server: str, figures: dict[str, Any]) -> str:
    if not figures:
        return f"  {name} {server}: nothing measured"
    ratio = figures["ratio_to_peak"]
    return (
        f"  {name} {server}: peak {figures['peak_goodput_per_s']:.2f}/s at "
        f"{figures['peak_at_clients']} clients; at {figures['largest_level']}: "
        f"{figures['goodput_at_largest_per_s']:.2f}/s (ratio to peak "
        f"{'-' if ratio is None else f'{ratio:.2f}'})"
    )


def _line(name: str, server: str, r: dict[str, Any]) -> str:
    p99, ping_p99 = r["latency_ms"].get("p99", nan), r.get("ping_ms", {}).get("p99", nan)
    return (
        f"  {name} {server:8} c={r['clients']:>3}: goodput {r['goodput_per_s']:.2f}/s "
        f"refused {r['refused_per_s']:.1f}/s other {sum(r['other_statuses'].values())} "
        f"conn errors {r['connection_errors']} p99 {p99:.0f} ms ping p99 {ping_p99:.1f} ms"
    )
