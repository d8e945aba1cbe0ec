"""What this machine offers the server: CPU cores and visible GPUs, read without CUDA.

gunicorn's master decides the worker count before it forks, and a CUDA context does not
survive fork, so GPUs are counted from CUDA_VISIBLE_DEVICES or the /dev/nvidiaN device
files, never by initialising CUDA.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
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
    on_gpu: bool = False  # False: the workers share the CPU's cores


def plan_workers(
    settings: Settings, cores: int | None = None, gpus: list[str] | None = None
) -> WorkerPlan:
    """Workers from the backend and the hardware unless MODEL_SERVER_WORKERS says.

    GPU backends on a GPU machine: one worker (one model) per visible GPU, each worker
    pinned to its own. On CPU one worker per core, each with an equal share of the cores
    for torch while others compute (`cpu_threads_now`). Measured on 2 cores for proxy
    tiny: one worker on both cores was 0.79x as fast as two workers on one core each at 4
    clients and 0.70x at 16 (benchmarks/results/cpu/peers_*.json)."""
    cores = cpu_cores() if cores is None else cores
    gpus = visible_gpus() if gpus is None else gpus
    on_gpu = settings.device == "cuda" or (
        settings.device == "auto" and is_gpu_backend(settings.backend) and bool(gpus)
    )
    if on_gpu and gpus:
        workers = settings.workers or len(gpus)
        pinned = tuple(gpus) if workers == len(gpus) else ()
        reason = f"{len(gpus)} GPU(s): one model each" if not settings.workers else "set"
        return WorkerPlan(workers, settings.torch_threads, pinned, reason, on_gpu=True)
    workers = settings.workers or cores
    threads = settings.torch_threads or max(1, cores // workers)
    reason = f"{cores} core(s): one worker each" if not settings.workers else "set"
    return WorkerPlan(workers, threads, (), reason)


def worker_batch_size(settings: Settings, plan: WorkerPlan | None = None) -> int:
    """Samples one worker batches at once. Workers on GPUs each take the whole
    GEN3D_MAX_BATCH_SIZE (as far as the backend batches). Workers that share the CPU's
    cores share it too, ceil(size / workers) each: the machine then computes about
    GEN3D_MAX_BATCH_SIZE samples at a time, as one worker on every core would, and a batch
    on one worker's share of the cores takes about as long as the whole batch on all of
    them, not `workers` times as long. Measured (proxy tiny, 2 cores, 16 clients, the
    idle peers paused, 2 interleaved rounds): batches of 4 per worker against 8, the
    same throughput (43.2 and 42.8 against 43.1 and 42.3 req/s), p99 505-528 ms against
    626-648 ms."""
    capacity = batch_capacity(settings.backend, settings.max_batch_size)
    plan = plan or plan_workers(settings)
    if plan.on_gpu or plan.workers <= 1:
        return capacity
    return max(1, -(-capacity // plan.workers))


# How many other workers of this server have requests in flight right now; installed by
# gen3d.serve.worker (it reads the shared WorkerBoard), zero outside gunicorn.
_busy_peers: Callable[[], int] = lambda: 0  # noqa: E731


def install_busy_peers(count: Callable[[], int]) -> None:
    global _busy_peers
    _busy_peers = count


def busy_peers() -> int:
    return _busy_peers()


def cpu_threads_now(plan: WorkerPlan, cores: int) -> int:
    """torch threads for the next batch on CPU: every core while the other workers are
    idle (one client: measured 1.2x faster than one core each), an equal share while they
    compute (more would oversubscribe the cores: 2 workers x 2 threads fell to 8 req/s)."""
    return cores if busy_peers() == 0 else plan.torch_threads
