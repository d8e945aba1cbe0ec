"""Timing a loaded backend's `predict` in this process: warm-up, repeats, memory.

On CUDA each repeat is timed with CUDA events (and wall clock); on CPU with
perf_counter. Peak memory: CUDA max_memory_allocated, or peak RSS sampled every few ms.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gen3d.benchmarks import payloads
from gen3d.benchmarks.stats import summarize
from gen3d.serve.backends.base import Backend, Sample

PAGE_MB = 4096 / 2**20


def rss_mb(pid: int | str = "self") -> float | None:
    try:
        resident = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident * PAGE_MB


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """VmHWM: the process's peak resident set since it started."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


class RssSampler:
    """Peak RSS of this process while a block runs (a thread polls /proc every 5 ms)."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.peak_mb = rss_mb() or 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, rss_mb() or 0.0)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_mb() or 0.0)


@dataclass
class Timing:
    batch: int
    seconds: list[float] = field(default_factory=list)  # per repeat, whole batch
    clock: str = "perf_counter"
    peak_memory_mb: float | None = None
    memory_kind: str = "rss"
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"batch": self.batch, "clock": self.clock}
        if self.error is not None:
            out["error"] = self.error
        if self.seconds:
            batch_s = summarize(self.seconds)
            out["batch_seconds"] = batch_s
            out["per_sample_ms"] = {
                k: (v * 1000 / self.batch if k not in ("n", "rel_iqr") else v)
                for k, v in batch_s.items()
            }
            out["throughput_per_s"] = self.batch / batch_s["median"]
            out["seconds_per_image"] = batch_s["median"] / self.batch
        out["peak_memory_mb"] = self.peak_memory_mb
        out["memory_kind"] = self.memory_kind
        return out


def _cuda(device: str) -> Any:
    if device != "cuda":
        return None
    import torch

    return torch if torch.cuda.is_available() else None


def time_predict(
    backend: Backend,
    batch_size: int,
    device: str,
    warmup: int = 2,
    repeats: int = 5,
    budget_s: float | None = None,
    samples: Callable[[int], list[Sample]] = payloads.batch,
) -> Timing:
    """Median-ready timings of `backend.predict` on a batch of `batch_size` samples.

    Stops repeating early (keeping at least 2 repeats) once `budget_s` is spent, so a
    slow configuration cannot blow a suite's time bound; the repeat count is recorded.
    """
    torch = _cuda(device)
    timing = Timing(batch=batch_size)
    batch = samples(batch_size)
    try:
        for _ in range(warmup):
            _check(backend.predict(batch))
        if torch is not None:
            timing.clock, timing.memory_kind = "cuda_events", "cuda_max_allocated"
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        with RssSampler() as sampler:
            for i in range(repeats):
                if torch is not None:
                    begin = torch.cuda.Event(enable_timing=True)
                    end = torch.cuda.Event(enable_timing=True)
                    begin.record()
                    _check(backend.predict(batch))
                    end.record()
                    torch.cuda.synchronize()
                    timing.seconds.append(begin.elapsed_time(end) / 1000)
                else:
                    t0 = time.perf_counter()
                    _check(backend.predict(batch))
                    timing.seconds.append(time.perf_counter() - t0)
                if budget_s is not None and i >= 1 and time.perf_counter() - started > budget_s:
                    break
        if torch is not None:
            timing.peak_memory_mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            timing.peak_memory_mb = round(sampler.peak_mb, 1)
    except Exception as exc:
        timing.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        if torch is not None:
            torch.cuda.empty_cache()
    return timing


def _check(results: list[Any]) -> None:
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        raise failed[0]


def torch_loaded() -> bool:
    return "torch" in sys.modules
