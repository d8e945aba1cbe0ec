"""What this machine offers the server: CPU cores and visible GPUs, read without CUDA.

gunicorn's master decides the worker count before it forks, and a CUDA context does not
survive fork, so GPUs are counted from CUDA_VISIBLE_DEVICES or the /dev/nvidiaN device
files, never by initialising CUDA.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gen3d.serve.backends import batch_capacity, is_gpu_backend
from gen3d.serve.settings import Settings

_NVIDIA_DEVICE = re.compile(r"nvidia(\d+)$")


def cpu_cores() -> int:
    """Cores this process may run on (the container's CPU set, not the host's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def visible_gpus(environ: Mapping[str, str] | None = None, dev: Path = Path("/dev")) -> list[str]:
    """The GPUs CUDA would see, as CUDA_VISIBLE_DEVICES entries (indices or UUIDs)."""
    env = os.environ if environ is None else environ
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        entries = [e.strip() for e in listed.split(",") if e.strip()]
        # CUDA stops at the first invalid entry; "-1" and "NoDevFiles" hide every GPU.
        visible = []
        for entry in entries:
            if entry.startswith("-") or entry == "NoDevFiles":
                break
            visible.append(entry)
        return visible
    try:
        names = [p.name for p in dev.iterdir()]
    except OSError:
        return []
    found = [m.group(1) for n in names if (m := _NVIDIA_DEVICE.match(n))]
    return sorted(found, key=int)


@dataclass(frozen=True)
class WorkerPlan:
    """How many gunicorn workers, what each one's torch threads are, and which GPU each
    worker gets (by worker slot; empty on CPU)."""

    workers: int
    torch_threads: int  # 0: torch's default
    gpus: tuple[str, ...] = ()
    reason: str = ""


def plan_workers(
    settings: Settings, cores: int | None = None, gpus: list[str] | None = None
) -> WorkerPlan:
    """Workers from the backend and the hardware unless MODEL_SERVER_WORKERS says.

    GPU backends on a GPU machine: one worker (one model) per visible GPU, each worker
    pinned to its own. On CPU, a backend that batches (proxy) gets one worker whose torch
    uses every core: its batches are parallel inside torch, and two workers of one thread
    each were 0.66x as fast for one client and no faster for 64; one that cannot batch
    (silhouette: numpy under the GIL) gets one worker per core. Measured on 2 cores:
    benchmarks/results/cpu/peers_*.json."""
    cores = cpu_cores() if cores is None else cores
    gpus = visible_gpus() if gpus is None else gpus
    on_gpu = settings.device == "cuda" or (
        settings.device == "auto" and is_gpu_backend(settings.backend) and bool(gpus)
    )
    if on_gpu and gpus:
        workers = settings.workers or len(gpus)
        pinned = tuple(gpus) if workers == len(gpus) else ()
        reason = f"{len(gpus)} GPU(s): one model each" if not settings.workers else "set"
        return WorkerPlan(workers, settings.torch_threads, pinned, reason)
    if settings.workers:
        workers, reason = settings.workers, "set"
    elif batch_capacity(settings.backend, settings.max_batch_size) > 1:
        workers, reason = 1, f"a batching backend: one worker, {cores} core(s) for torch"
    else:
        workers, reason = cores, f"{cores} core(s): one worker each"
    threads = settings.torch_threads or max(1, cores // workers)
    return WorkerPlan(workers, threads, (), reason)
