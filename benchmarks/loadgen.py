"""Closed-loop HTTP load on a loopback server, bounded in time and in request count.

`concurrency` client threads each keep one keep-alive connection and send the next
request as soon as the previous answer arrives. After a warm-up period, a measurement
window starts; it ends after `duration_s` or `max_requests` completions, whichever comes
first. A separate prober GETs the health route at a fixed rate during the window, so
its latency is measured under exactly that load.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from gen3d.benchmarks.stats import percentile_curve, summarize, window_rates

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Target:
    base_url: str  # http://127.0.0.1:PORT
    path: str
    body: bytes
    headers: dict[str, str]
    health_path: str = "/ping"
    metadata_header: str | None = "X-Gen3D-Metadata"

    def __post_init__(self) -> None:
        host = urlsplit(self.base_url).hostname
        if host not in LOOPBACK_HOSTS:  # benchmarks never load anything but this machine
            raise ValueError(f"load generation is loopback-only; got host {host!r}")


@dataclass
class Completion:
    """One request as the client saw it (perf_counter times)."""

    started: float
    finished: float
    status: int | str
    metadata: dict[str, Any] | None = None


@dataclass
class _Shared:
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    window_start: float | None = None
    window_end: float | None = None
    in_window: int = 0
    max_requests: int = 0
    records: list[Completion] = field(default_factory=list)


def _connection(target: Target, timeout_s: float) -> http.client.HTTPConnection:
    parts = urlsplit(target.base_url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)


def _worker(target: Target, shared: _Shared, timeout_s: float) -> None:
    conn = _connection(target, timeout_s)
    while not shared.stop.is_set():
        started = time.perf_counter()
        metadata = None
        try:
            conn.request("POST", target.path, body=target.body, headers=target.headers)
            response = conn.getresponse()
            response.read()
            status: int | str = response.status
            if target.metadata_header and status == 200:
                raw = response.getheader(target.metadata_header)
                metadata = _metadata(raw) if raw else None
        except (OSError, http.client.HTTPException) as exc:
            status = f"exception:{type(exc).__name__}"
            conn.close()
            conn = _connection(target, timeout_s)
        finished = time.perf_counter()
        with shared.lock:
            shared.records.append(Completion(started, finished, status, metadata))
            if (
                shared.window_start is not None
                and finished >= shared.window_start
                and shared.window_end is None
            ):
                shared.in_window += 1
                if shared.in_window >= shared.max_requests:
                    shared.window_end = finished
                    shared.stop.set()
    conn.close()


def _metadata(raw: str) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return {k: data.get(k) for k in ("batch_size", "queue_ms", "inference_ms")}


def _prober(
    target: Target,
    shared: _Shared,
    interval_s: float,
    out: list[tuple[float, Any]],
    timeout_s: float,
) -> None:
    conn = _connection(target, timeout_s)
    while shared.window_start is None and not shared.stop.is_set():
        time.sleep(0.005)
    while not shared.stop.is_set():
        started = time.perf_counter()
        try:
            conn.request("GET", target.health_path)
            response = conn.getresponse()
            response.read()
            status: Any = response.status
        except (OSError, http.client.HTTPException) as exc:
            status = f"exception:{type(exc).__name__}"
            conn.close()
            conn = _connection(target, timeout_s)
        elapsed = time.perf_counter() - started
        out.append((elapsed * 1000, status))
        shared.stop.wait(max(0.0, interval_s - elapsed))
    conn.close()


@dataclass
class LoadWindow:
    """What one measurement window saw: the answers that finished inside it and the
    health probes sent during it, before any summary (windows can be pooled)."""

    concurrency: int
    start: float  # perf_counter
    end: float
    records: list[Completion]
    pings: list[tuple[float, Any]]

    @property
    def seconds(self) -> float:
        return self.end - self.start


def run_load(target: Target, concurrency: int, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """One closed-loop level, summarized: throughput, latency percentiles, errors, probes
    (`collect_load`'s arguments)."""
    return summarize_windows([collect_load(target, concurrency, *args, **kwargs)])


def collect_load(
    target: Target,
    concurrency: int,
    duration_s: float = 6.0,
    max_requests: int = 400,
    warmup_s: float = 1.0,
    ping_interval_s: float | None = 0.02,
    timeout_s: float = 60.0,
    min_requests: int | None = None,
    max_duration_s: float | None = None,
) -> LoadWindow:
    """One closed-loop level's window: every answer and probe in it, unsummarized.

    Warm-up lasts `warmup_s` and at least one answer per client (the queue reaches its
    steady state). The window then lasts `duration_s`, extended until `min_requests`
    (default 2 x concurrency) answers so slow levels still give percentiles, and is cut
    at `max_requests` answers or `max_duration_s` (default 3 x duration_s) whatever comes
    first: every level is bounded in count and in time.
    """
    min_requests = 2 * concurrency if min_requests is None else min_requests
    hard_stop = max_duration_s if max_duration_s is not None else 3 * duration_s
    shared = _Shared(max_requests=max_requests)
    pings: list[tuple[float, Any]] = []
    threads = [
        threading.Thread(target=_worker, args=(target, shared, timeout_s), daemon=True)
        for _ in range(concurrency)
    ]
    if ping_interval_s:
        threads.append(
            threading.Thread(
                target=_prober,
                args=(target, shared, ping_interval_s, pings, timeout_s),
                daemon=True,
            )
        )
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    while not shared.stop.is_set():  # warm-up
        elapsed = time.perf_counter() - began
        if elapsed >= hard_stop or (elapsed >= warmup_s and len(shared.records) >= concurrency):
            break
        time.sleep(0.01)
    with shared.lock:
        shared.window_start = time.perf_counter()
    while not shared.stop.is_set():
        elapsed = time.perf_counter() - shared.window_start
        if elapsed >= hard_stop or (elapsed >= duration_s and shared.in_window >= min_requests):
            break
        time.sleep(0.01)
    with shared.lock:
        if shared.window_end is None:
            shared.window_end = time.perf_counter()
        shared.stop.set()
    for thread in threads:
        thread.join(timeout_s + 5)
    start, end = shared.window_start, shared.window_end
    assert start is not None and end is not None
    with shared.lock:
        records = [r for r in shared.records if start <= r.finished <= end]
    return LoadWindow(concurrency, start, end, records, pings)


def summarize_windows(windows: list[LoadWindow]) -> dict[str, Any]:
    """One level's figures from one or more windows at the same concurrency, pooled:
    throughput is all 200s over all the windows' time, percentiles are over every
    answer. Several short windows interleaved with other servers' see the machine's
    speed as those servers do (it moves for tens of seconds: docs/measurements.md)."""
    if not windows:
        raise ValueError("no load windows to summarize")
    records = [r for w in windows for r in w.records]
    pings = [p for w in windows for p in w.pings]
    ok = [r for r in records if r.status == 200]
    errors: dict[str, int] = {}
    for r in records:
        if r.status != 200:
            errors[str(r.status)] = errors.get(str(r.status), 0) + 1
    latencies = [(r.finished - r.started) * 1000 for r in ok]
    seconds = sum(w.seconds for w in windows)
    rates = [
        rate
        for w in windows
        for rate in window_rates([r.finished for r in w.records if r.status == 200], w.start, w.end)
    ]
    result: dict[str, Any] = {
        "concurrency": windows[0].concurrency,
        "window_s": round(seconds, 3),
        "completed": len(records),
        "ok": len(ok),
        "errors": errors,
        "error_rate": (len(records) - len(ok)) / len(records) if records else None,
        "throughput_per_s": len(ok) / seconds if seconds > 0 else None,
        "throughput_windows_per_s": summarize(rates),
        "latency_ms": summarize(latencies),
        "latency_curve_ms": [round(v, 3) for v in percentile_curve(latencies, 101)],
    }
    if len(windows) > 1:
        result["slices"] = len(windows)
    metas = [r.metadata for r in ok if r.metadata]
    if metas:
        result["server_metadata"] = {
            key: summarize([m[key] for m in metas if isinstance(m.get(key), int | float)])
            for key in ("batch_size", "queue_ms", "inference_ms")
        }
    if pings:
        ping_ok = [ms for ms, status in pings if status == 200]
        result["ping_ms"] = summarize(ping_ok)
        result["ping_failures"] = len(pings) - len(ping_ok)
    return result
