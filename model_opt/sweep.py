"""The committed CPU table: every variant of a proxy model measured `repeats` times
(each time every variant in a fresh process, interleaved), medians per metric, plus cold
starts with and without the compile cache. The machine is shared, so medians.

python -m gen3d.model_opt.sweep --model-dir models/proxy-tiny --work /tmp/sweep \\
    --out benchmarks/results/cpu/model_opt_variants.json --repeats 3 --cold-start-runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

from gen3d.model_opt.cold_start import compare_cold_starts
from gen3d.model_opt.optimize import build_proxy_artifact
from gen3d.model_opt.report import measure_variants, recommend, to_markdown
from gen3d.serve.artifact.variant import Variant

CPU_VARIANTS = (
    Variant("fp16"),
    Variant("bf16"),
    Variant("fp32", "int8-weight", "torchao"),
    Variant("fp32", "int8-dynamic", "torchao"),
    Variant("fp32", "int8-dynamic", "pytorch"),
    Variant("bf16", "int8-dynamic", "torchao"),
)
MEDIAN_KEYS = (
    "latency_ms_per_sample_batch1",
    "latency_ms_per_sample_batch_max",
    "peak_memory_bytes",
    "load_s",
    "warmup_s",
)


def merge(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Latencies: the best of the repeats' medians (on a shared machine contention only
    ever adds time; every repeat is kept under *_all). Memory and load: the median."""
    merged = dict(reports[0])
    rows = []
    for i, row in enumerate(reports[0]["rows"]):
        same = [r["rows"][i] for r in reports]
        out = dict(row)
        for key in MEDIAN_KEYS:
            values = [r[key] for r in same]
            out[key] = min(values) if key.startswith("latency") else statistics.median(values)
            out[key + "_all"] = values
        rows.append(out)
    merged["rows"] = rows
    merged["repeats"] = len(reports)
    merged["statistic"] = "latency: min over repeats of the median of runs; others: median"
    merged["recommendation"] = recommend(rows)
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--cold-start-runs", type=int, default=3)
    args = parser.parse_args(argv)
    cpu = torch.device("cpu")
    dirs = {}
    for i, variant in enumerate(CPU_VARIANTS):
        dirs[variant.label] = args.work / f"v{i}"
        build_proxy_artifact(
            args.model_dir,
            dirs[variant.label],
            variant,
            cpu,
            max_batch_size=args.max_batch_size,
            progress=print,
        )
    # The machine is shared: the load average (1, 5, 15 min) around each repeat says how
    # quiet it was.
    load_average = [os.getloadavg()]
    reports = []
    for _ in range(args.repeats):
        reports.append(
            measure_variants(
                args.model_dir, dirs, "cpu", args.max_batch_size, args.runs, progress=print
            )
        )
        load_average.append(os.getloadavg())
    report = merge(reports)
    report["load_average_1_5_15min"] = {
        "before_first_repeat": list(load_average[0]),
        "after_each_repeat": [list(a) for a in load_average[1:]],
    }
    report["command"] = "python -m gen3d.model_opt.sweep " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    if args.cold_start_runs:
        compiled = args.work / "compiled"
        build_proxy_artifact(
            args.model_dir,
            compiled,
            Variant("fp32", compile=True),
            cpu,
            max_batch_size=args.max_batch_size,
            progress=print,
        )
        report["cold_start"] = compare_cold_starts(
            compiled, "cpu", args.cold_start_runs, args.max_batch_size, print
        )
    report["torch"] = torch.__version__
    report["cpu_count"] = torch.get_num_threads()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    args.out.with_suffix(".md").write_text(to_markdown(report))
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
