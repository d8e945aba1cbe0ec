"""`gen3d bench all`: the CPU suite (make bench) or the GPU suite (make bench DEVICE=cuda), bounded.

CPU (here, <= 10 min on 2 cores): silhouette and proxy tiny through every suite, then
the overload suite on our server alone with silhouette (about 40 s: 4 levels of 6 s;
its peers run, with LitServe and the BYOC peer at every level, would take minutes more:
run it on its own with `gen3d bench overload --peers`).
GPU (<= 8 min on any CUDA GPU): proxy full at fp32/fp16/bf16/int8, batch 1-8, with a
reduced step count, then a server run; configurations that would not fit the remaining
time are recorded as skipped, not run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from gen3d.benchmarks.coldstart import ColdstartConfig, run_coldstart_suite
from gen3d.benchmarks.model import ModelSuiteConfig, run_model_suite
from gen3d.benchmarks.overload import OverloadConfig, run_overload_suite
from gen3d.benchmarks.peers import PeersConfig, run_peers_suite
from gen3d.benchmarks.server import ServerSuiteConfig, run_server_suite

# CPU: the server gets all cores but one; the load generator runs on the same machine
# (torch's OpenMP threads collapse when the client takes a core from them).
CPU_SERVER_THREADS = max(1, (os.cpu_count() or 2) - 1)
# the peers in two interleaved slices each, not the suite's 4: every slice has its own
# warm-up, and make bench must stay within 10 minutes (`gen3d bench peers` takes 4)
PEERS_SLICES = 2
GPU_STEPS = 2  # per stage; full is 25 + 25 (minutes per sample on a T4 at fp32)
GPU_DEADLINE_S = 8 * 60
CPU_DEADLINE_S = 9 * 60  # make bench must end within 10 minutes here, report included


def run_cpu_suite(
    out: Path, instance_type: str | None, progress: Callable[[str], None] = print
) -> list[Path]:
    written: list[Path] = []
    steps: list[tuple[str, Callable[[], Path]]] = [
        (
            "model silhouette",
            lambda: run_model_suite(
                ModelSuiteConfig(
                    backend="silhouette", batches=[1, 2, 4], repeats=5, instance_type=instance_type
                ),
                out,
                progress,
            ),
        ),
        (
            "model proxy tiny",
            lambda: run_model_suite(
                ModelSuiteConfig(
                    backend="proxy",
                    size="tiny",
                    precisions=["fp32", "bf16", "fp16", "int8"],
                    batches=[1, 2, 4, 8],
                    warmup=1,
                    repeats=5,
                    budget_s=3.0,
                    instance_type=instance_type,
                ),
                out,
                progress,
            ),
        ),
        (
            "server silhouette",
            lambda: run_server_suite(
                ServerSuiteConfig(
                    backend="silhouette",
                    batching=["on"],
                    duration_s=4.0,
                    torch_threads=CPU_SERVER_THREADS,
                    instance_type=instance_type,
                ),
                out,
                progress,
            ),
        ),
        (
            "server proxy tiny",
            lambda: run_server_suite(
                ServerSuiteConfig(
                    backend="proxy",
                    size="tiny",
                    batching=["on", "off"],
                    duration_s=4.0,
                    torch_threads=CPU_SERVER_THREADS,
                    instance_type=instance_type,
                ),
                out,
                progress,
            ),
        ),
        (
            "coldstart silhouette",
            lambda: run_coldstart_suite(
                ColdstartConfig(backend="silhouette", repeats=3, instance_type=instance_type),
                out,
                progress,
            ),
        ),
        (
            "coldstart proxy tiny",
            lambda: run_coldstart_suite(
                ColdstartConfig(
                    backend="proxy",
                    size="tiny",
                    repeats=2,
                    compile_repeats=1,
                    instance_type=instance_type,
                ),
                out,
                progress,
            ),
        ),
        (
            "peers silhouette",
            lambda: run_peers_suite(
                PeersConfig(
                    backend="silhouette",
                    duration_s=4.0,
                    slices=PEERS_SLICES,
                    instance_type=instance_type,
                    torch_threads=CPU_SERVER_THREADS,
                ),
                out,
                progress,
            ),
        ),
        (
            "peers proxy tiny",
            lambda: run_peers_suite(
                PeersConfig(
                    backend="proxy",
                    size="tiny",
                    duration_s=4.0,
                    slices=PEERS_SLICES,
                    instance_type=instance_type,
                    torch_threads=CPU_SERVER_THREADS,
                ),
                out,
                progress,
            ),
        ),
        (  # last: the step the deadline drops first if the machine is slow today
            "overload silhouette",
            lambda: run_overload_suite(
                OverloadConfig(
                    backend="silhouette",
                    duration_s=6.0,
                    instance_type=instance_type,
                    torch_threads=CPU_SERVER_THREADS,
                ),
                out,
                progress,
            ),
        ),
    ]
    return _run(steps, written, progress, CPU_DEADLINE_S)


def run_gpu_suite(
    out: Path,
    instance_type: str | None,
    model_dir: Path | None,
    deadline_s: float = GPU_DEADLINE_S,
    progress: Callable[[str], None] = print,
) -> list[Path]:
    started = time.monotonic()
    deadline = started + deadline_s
    # the server run needs ~2.5 min of the budget: the model suite gets the rest
    model_deadline = deadline - 150
    steps: list[tuple[str, Callable[[], Path]]] = [
        (
            "model proxy full",
            lambda: run_model_suite(
                ModelSuiteConfig(
                    backend="proxy",
                    size="full",
                    device="cuda",
                    precisions=["fp16", "bf16", "int8", "fp32"],
                    batches=[1, 2, 4, 8],
                    warmup=1,
                    repeats=3,
                    budget_s=15.0,
                    steps=GPU_STEPS,
                    model_dir=model_dir,
                    instance_type=instance_type,
                    deadline=model_deadline,
                ),
                out,
                progress,
            ),
        ),
        (
            "server proxy full",
            lambda: run_server_suite(
                ServerSuiteConfig(
                    backend="proxy",
                    size="full",
                    device="cuda",
                    precision="fp16",
                    levels=[1, 8],
                    batching=["on", "off"],
                    duration_s=8.0,
                    max_requests=200,
                    warmup_s=2.0,
                    inprocess_repeats=2,
                    steps=GPU_STEPS,
                    model_dir=model_dir,
                    instance_type=instance_type,
                    server_warmup=False,
                ),
                out,
                progress,
            ),
        ),
    ]
    return _run(steps, [], progress, deadline_s - 120)  # no server run with < 2 min left


def _run(
    steps: list[tuple[str, Callable[[], Path]]],
    written: list[Path],
    progress: Callable[[str], None],
    deadline_s: float,
) -> list[Path]:
    """Run the steps in order; once past the deadline, the remaining ones are skipped
    (said loudly: the report then shows them as not measured)."""
    total = time.monotonic()
    for name, step in steps:
        if time.monotonic() - total > deadline_s:
            progress(f"[bench] SKIPPED {name}: the suite's {deadline_s:.0f} s budget is spent")
            continue
        started = time.monotonic()
        progress(f"[bench] {name} ...")
        path = step()
        written.append(path)
        progress(f"[bench] {name}: {time.monotonic() - started:.0f} s -> {path}")
    progress(f"[bench] all suites: {time.monotonic() - total:.0f} s")
    return written
