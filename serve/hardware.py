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

from gen3d.serve.backends import is_gpu_backend
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
    pinned to its own. Otherwise one worker per core, each with an equal share of the cores
    for torch (one worker per core measured best for the CPU backends here:
    benchmarks/results/cpu/peers_*.json)."""
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
    workers = settings.workers or cores
    threads = settings.torch_threads or max(1, cores // workers)
    reason = f"{cores} core(s): one worker each" if not settings.workers else "set"
    return WorkerPlan(workers, threads, (), reason)
