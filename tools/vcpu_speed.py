"""How fast this machine's cores are from one second to the next, with nothing else running.

Why the benchmarks interleave their servers in short slices (issue 12): the same fixed,
single-threaded piece of work is timed over and over, pinned to each core in turn, for
`--seconds`. On a machine of its own it takes the same time every time. On a virtual
machine whose host shares its physical cores, it does not: the guest cannot see the host
taking a core away (no steal time is reported), so the work simply takes longer, on
both cores at once, for tens of seconds at a time. A server measured for 8 s in such a
spell looks slower than one measured just before it, whatever either of them does.

Each sample records wall time and the thread's CPU time: if both move together, the
core itself ran slower (the host), not our thread waiting for it (the guest).

    .venv/bin/python tools/vcpu_speed.py --seconds 120 \\
        --out benchmarks/results/cpu/vcpu_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

WORK_ITERATIONS = 2_000_000  # about 0.1 s of pure Python on these cores


def fixed_work() -> tuple[float, float]:
    """(wall s, thread CPU s) of the same arithmetic every time."""
    wall, cpu = time.perf_counter(), time.thread_time()
    total = 0
    for i in range(WORK_ITERATIONS):
        total += i * i
    return time.perf_counter() - wall, time.thread_time() - cpu


def steal_ticks() -> int:
    """The kernel's steal time (all CPUs, clock ticks): what the host admits to taking."""
    with open("/proc/stat") as stat:
        return int(stat.readline().split()[8])


def spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "min": round(ordered[0], 4),
        "median": round(statistics.median(ordered), 4),
        "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 4),
        "max": round(ordered[-1], 4),
        "max_over_min": round(ordered[-1] / ordered[0], 3),
    }


def windows(samples: list[dict[str, Any]], seconds: float) -> list[float]:
    """Median wall time of the work in consecutive windows of `seconds`: how the speed
    moves on the time scale of one benchmark window."""
    out: list[float] = []
    start = samples[0]["at_s"]
    bucket: list[float] = []
    for sample in samples:
        if sample["at_s"] - start >= seconds and bucket:
            out.append(round(statistics.median(bucket), 4))
            start, bucket = sample["at_s"], []
        bucket.append(sample["wall_s"])
    if bucket:
        out.append(round(statistics.median(bucket), 4))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="how long to sample")
    parser.add_argument("--window-s", type=float, default=8.0, help="summary window")
    parser.add_argument("--out", type=Path, help="write the samples and summary here")
    args = parser.parse_args()
    if args.seconds <= 0 or args.window_s <= 0:
        parser.error("--seconds and --window-s must be positive")
    cores = sorted(os.sched_getaffinity(0))
    began, steal_before = time.perf_counter(), steal_ticks()
    samples: list[dict[str, Any]] = []
    last_report = began
    while time.perf_counter() - began < args.seconds:
        for core in cores:
            os.sched_setaffinity(0, {core})
            wall, cpu = fixed_work()
            at = time.perf_counter() - began
            samples.append({"core": core, "at_s": round(at, 3), "wall_s": wall, "cpu_s": cpu})
        if time.perf_counter() - last_report >= 10:
            last_report = time.perf_counter()
            done = last_report - began
            print(f"  {done:.0f}/{args.seconds:.0f} s, last {wall:.3f} s", flush=True)
    os.sched_setaffinity(0, set(cores))
    steal = steal_ticks() - steal_before
    per_core = {}
    for core in cores:
        mine = [s for s in samples if s["core"] == core]
        per_core[str(core)] = {
            "samples": len(mine),
            "wall_s": spread([s["wall_s"] for s in mine]),
            "cpu_s": spread([s["cpu_s"] for s in mine]),
            "window_medians_s": windows(mine, args.window_s),
        }
    result = {
        "what": __doc__.splitlines()[0],
        "command": "python tools/vcpu_speed.py " + f"--seconds {args.seconds:g}",
        "machine": {"cpus": len(cores), "python": platform.python_version()},
        "seconds": args.seconds,
        "window_s": args.window_s,
        "steal_seconds": steal / os.sysconf("SC_CLK_TCK"),
        "per_core": per_core,
        "samples": [
            s | {"wall_s": round(s["wall_s"], 4), "cpu_s": round(s["cpu_s"], 4)} for s in samples
        ],
    }
    for core, entry in per_core.items():
        wall, cpu = entry["wall_s"], entry["cpu_s"]
        print(
            f"core {core}: wall min {wall['min']} median {wall['median']} max {wall['max']}"
            f" ({wall['max_over_min']}x), CPU time {cpu['max_over_min']}x;"
            f" {args.window_s:g} s window medians {entry['window_medians_s']}"
        )
    print(f"steal time reported by the kernel: {result['steal_seconds']:.2f} s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
