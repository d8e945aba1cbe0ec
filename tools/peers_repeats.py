"""The peers suite several times over, and the median of each figure (issue 12).

On this shared 2-core machine one run's ratios move by 10 % or more from run to run (the
load generator shares the cores, and so do other tenants), so a single run cannot say
whether ours is ahead of a peer by a few per cent. This runs `gen3d bench peers` N times
(each run already interleaves ours, LitServe and the AWS-BYOC-style peer at every level)
and writes every run's rows plus, per level and server, the median throughput and p99
and the median of the per-run ratios.

    .venv/bin/python tools/peers_repeats.py --backend silhouette --repeats 3 \\
        --out benchmarks/results/cpu/peers_repeats_silhouette.json
    .venv/bin/python tools/peers_repeats.py --backend proxy --repeats 3 \\
        --out benchmarks/results/cpu/peers_repeats_proxy-tiny.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from gen3d.benchmarks.peers import PeersConfig, run_peers_suite

SERVERS = ("ours", "litserve", "byoc")
RATIOS = ("throughput_ratio", "p99_ratio", "byoc_throughput_ratio", "byoc_p99_ratio")


def median_or_none(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def summarize(runs: list[list[dict[str, Any]]]) -> dict[str, Any]:
    levels = sorted({row["concurrency"] for rows in runs for row in rows})
    out: dict[str, Any] = {}
    for level in levels:
        rows = [row for rows in runs for row in rows if row["concurrency"] == level]
        entry: dict[str, Any] = {}
        for server in SERVERS:
            entry[server] = {
                "throughput_per_s": median_or_none([r[server]["throughput_per_s"] for r in rows]),
                "p99_ms": median_or_none([r[server]["latency_ms"].get("p99") for r in rows]),
            }
        for ratio in RATIOS:
            entry[ratio] = median_or_none([r.get(ratio) for r in rows])
            entry[ratio + "_runs"] = [r.get(ratio) and round(r[ratio], 3) for r in rows]
        out[str(level)] = entry
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("silhouette", "proxy"), default="silhouette")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration-s", type=float, default=8.0, help="window per level")
    parser.add_argument(
        "--levels", type=int, nargs="+", help="client counts (default: the suite's own)"
    )
    parser.add_argument(
        "--slices", type=int, default=PeersConfig.slices, help="interleaved windows per level"
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.repeats < 1 or args.slices < 1 or args.duration_s <= 0:
        parser.error("--repeats and --slices must be >= 1 and --duration-s positive")
    config = PeersConfig(
        backend=args.backend,
        duration_s=args.duration_s,
        max_requests=1000,
        slices=args.slices,
    )
    if args.levels:
        config.levels = args.levels
    runs: list[list[dict[str, Any]]] = []
    environment: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="gen3d-peers-repeats-") as tmp:
        for index in range(args.repeats):
            print(f"run {index + 1}/{args.repeats}", flush=True)
            config.order_offset = index  # each server goes first at each level in turn
            path = run_peers_suite(config, Path(tmp) / str(index))
            doc = json.loads(path.read_text())
            runs.append(doc["results"])
            environment = doc.get("environment", environment)
    result = {
        "what": __doc__.splitlines()[0],
        "command": " ".join(["python", *sys.argv]),
        "backend": config.name,
        "repeats": args.repeats,
        "duration_s": args.duration_s,
        "slices": config.slices,
        "levels": config.levels,
        # the two servers not being measured were paused (gen3d.benchmarks.peers)
        "pause_idle": config.pause_idle,
        "environment": environment,
        "median": summarize(runs),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for level, entry in result["median"].items():
        print(
            f"c={level}: ours/LitServe thr {entry['throughput_ratio']} p99 {entry['p99_ratio']}"
            f" | ours/BYOC thr {entry['byoc_throughput_ratio']} p99 {entry['byoc_p99_ratio']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
