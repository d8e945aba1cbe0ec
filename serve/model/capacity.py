"""The capacity plan: model workers, what each holds, and the front's limits, in one place.

Computed once by the supervisor and handed down (`to_env`/`from_env`). Two shapes: a
backend that batches gets one worker per GPU (pinned), or one on every core; one that
cannot gets a worker per GPU or per core. GPUs are counted without initialising CUDA (a
CUDA context does not survive fork).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from gen3d.serve.backends import batch_capacity, is_gpu_backend, lookup
from gen3d.serve.settings import Settings, SettingsError

PLAN_ENV = "GEN3D_CAPACITY_PLAN"  # the supervisor's plan, as JSON, for its children
# request threads per worker kept free of /invocations, so /ping always finds one
PING_HEADROOM = 8
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
        visible = []
        for entry in (e.strip() for e in listed.split(",") if e.strip()):
            # CUDA stops at the first invalid entry; "-1" and "NoDevFiles" hide every GPU.
            if entry.startswith("-") or entry == "NoDevFiles":
                break
            visible.append(entry)
        return visible
    try:
        names = [p.name for p in dev.iterdir()]
    except OSError:
        return []
    return sorted((m.group(1) for n in names if (m := _NVIDIA_DEVICE.match(n))), key=int)


@dataclass(frozen=True)
class CapacityPlan:
    workers: int  # model workers, each its own gunicorn (one process, one model)
    batch_size: int  # samples one worker's batcher runs at once
    invocations: int  # /invocations one worker holds: running batch, queue, waiting room
    threads: int  # request threads per worker: its invocations and /ping headroom
    torch_threads: int  # 0: torch's default
    gpus: tuple[str, ...] = ()  # CUDA_VISIBLE_DEVICES per worker; empty on CPU
    reason: str = ""

    def to_env(self) -> dict[str, str]:
        return {PLAN_ENV: json.dumps(asdict(self))}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CapacityPlan | None:
        raw = (os.environ if environ is None else environ).get(PLAN_ENV)
        if not raw:
            return None
        fields = json.loads(raw)
        return cls(**{**fields, "gpus": tuple(fields.get("gpus", ()))})


def plan(
    settings: Settings, cores: int | None = None, gpus: list[str] | None = None
) -> CapacityPlan:
    """The plan for these settings on this hardware (MODEL_SERVER_WORKERS overrides the
    worker count; GEN3D_TORCH_THREADS and GEN3D_WORKER_THREADS their own figures)."""
    try:
        lookup(settings.backend)
    except ValueError as exc:
        raise SettingsError(f"GEN3D_BACKEND={settings.backend!r}: {exc}") from None
    cores = cpu_cores() if cores is None else cores
    gpus = visible_gpus() if gpus is None else gpus
    batch = batch_capacity(settings.backend, settings.max_batch_size)
    on_gpu = bool(gpus) and (
        settings.device == "cuda"
        or (settings.device == "auto" and is_gpu_backend(settings.backend))
    )
    if on_gpu:
        workers, reason = len(gpus), f"{len(gpus)} GPU(s): one model each"
    elif batch > 1:
        workers, reason = 1, f"batching on CPU: one worker, torch on all {cores} core(s)"
    else:
        workers, reason = cores, f"{cores} core(s), batch of 1: one worker each"
    if settings.workers:
        workers, reason = settings.workers, "MODEL_SERVER_WORKERS"
    pinned = tuple(gpus) if on_gpu and workers == len(gpus) else ()
    torch_threads = settings.torch_threads or (0 if on_gpu else max(1, cores // workers))
    if settings.worker_threads:
        threads = settings.worker_threads
        invocations = max(1, threads - PING_HEADROOM)
    else:
        invocations = batch + settings.max_queue + settings.max_waiting
        threads = invocations + PING_HEADROOM
    return CapacityPlan(workers, batch, invocations, threads, torch_threads, pinned, reason)


def current(settings: Settings) -> CapacityPlan:
    """The plan this process was started with (the supervisor's), or this machine's."""
    return CapacityPlan.from_env() or plan(settings)
