"""Peers suite repeated: the median of each figure over several whole runs.

On a shared 2-core machine one run's ratios move by 10 % or more from run to run (the
load generator shares the cores, and so do other tenants), so a single run cannot say
whether ours is ahead of a peer by a few per cent. `gen3d bench peers --repeats N` runs
the peers suite N times, each with the measuring order turned by one more place
(`order_offset`: every server goes first at every level in some run), and writes one
document, suite "peers_repeats": per level and server the median throughput and p99, and
the median of the per-run ratios with each run's ratio beside it.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from gen3d.benchmarks.peers import PeersConfig, run_peers_suite
from gen3d.benchmarks.results_io import Recorder

SERVERS = ("ours", "litserve", "byoc", "ceiling")
RATIOS = (
    *("throughput_ratio", "p99_ratio", "byoc_throughput_ratio", "byoc_p99_ratio"),
    *("ceiling_ratio", "byoc_ceiling_ratio"),
)


def median_or_none(values: list[float | None]) -> float | None:
    """Median of the values present (a run without a figure does not count as 0)."""
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def summarize_runs(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each run's peers rows -> one row per level: medians across the runs."""
    levels = sorted({row["concurrency"] for rows in runs for row in rows})
    out = []
    for level in levels:
        rows = [row for rows in runs for row in rows if row["concurrency"] == level]
        entry: dict[str, Any] = {"concurrency": level, "runs": len(rows)}
        for server in (s for s in SERVERS if all(s in r for r in rows)):
            entry[server] = {
                "throughput_per_s": median_or_none([r[server]["throughput_per_s"] for r in rows]),
                "p99_ms": median_or_none([r[server]["latency_ms"].get("p99") for r in rows]),
            }
        for ratio in RATIOS:
            entry[ratio] = median_or_none([r.get(ratio) for r in rows])
            entry[ratio + "_runs"] = [
                None if r.get(ratio) is None else round(r[ratio], 3) for r in rows
            ]
        out.append(entry)
    return out


def run_peers_repeats(
    config: PeersConfig,
    repeats: int,
    out_root: Path,
    progress: Callable[[str], None] = print,
) -> Path:
    """`repeats` whole peers runs, then OUT/<device>/peers_repeats_<name>.json."""
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    runs: list[list[dict[str, Any]]] = []
    environment: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="gen3d-peers-repeats-") as tmp:
        for index in range(repeats):
            progress(f"peers run {index + 1}/{repeats}")
            # each run turns the order one more place: each server goes first in turn
            run_config = replace(config, order_offset=config.order_offset + index)
            path = run_peers_suite(run_config, Path(tmp) / str(index), progress)
            doc = json.loads(path.read_text())
            runs.append(doc["results"])
            environment = doc["environment"]
    recorder = Recorder("peers_repeats", config.name, environment, config.document())
    recorder.config["repeats"] = repeats
    for entry in summarize_runs(runs):
        recorder.add(entry)
        progress(
            f"  median c={entry['concurrency']}: ours/LitServe thr {entry['throughput_ratio']}"
            f" p99 {entry['p99_ratio']} | ours/BYOC thr {entry['byoc_throughput_ratio']}"
            f" p99 {entry['byoc_p99_ratio']} | ours/ceiling thr {entry['ceiling_ratio']}"
        )
    recorder.summary["runs"] = runs  # every run's own rows, for a second look
    return recorder.write(out_root)
