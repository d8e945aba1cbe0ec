"""Why gen3d.serve.metrics writes EMF itself: the cost of one per-request EMF line through
`aws-embedded-metrics` and through our writer, plus what the library adds to the image.

Needs `pip install aws-embedded-metrics` (not a project dependency: this is the measurement
that kept it out). Both paths write the same metrics to /dev/null in this process; the
library runs in its Local environment (stdout), so it probes no network.

    .venv/bin/python tools/emf_choice.py --out benchmarks/results/emf_choice.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from gen3d.serve.metrics import Metrics, RequestRecord
from gen3d.serve.settings import Settings

RECORD = RequestRecord(
    request_id="0123456789abcdef0123456789abcdef",
    status=200,
    duration_ms=123.4,
    items=1,
    batch_size=4,
    queue_ms=3.2,
    inference_ms=101.7,
    encode_ms=8.9,
    bytes_out=1_156_900,
)


def our_writer(sink: io.TextIOBase) -> Metrics:
    """The server's set-up (once per worker): a logger with a bare-message handler."""
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("emf-choice")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return Metrics(Settings(deployment="bench", emf_metrics="on"), emit=logger.info)


def library() -> None:
    from aws_embedded_metrics.logger.metrics_logger_factory import create_metrics_logger

    m = create_metrics_logger()
    m.set_namespace("Gen3D")
    m.set_dimensions({"Deployment": "bench", "Backend": "silhouette"})
    for name, value, unit in (
        ("Requests", 1, "Count"),
        ("Errors4xx", 0, "Count"),
        ("Errors5xx", 0, "Count"),
        ("RequestLatency", RECORD.duration_ms, "Milliseconds"),
        ("BytesOut", RECORD.bytes_out, "Bytes"),
        ("QueueTime", RECORD.queue_ms, "Milliseconds"),
        ("InferenceTime", RECORD.inference_ms, "Milliseconds"),
        ("EncodeTime", RECORD.encode_ms, "Milliseconds"),
    ):
        m.put_metric(name, value, unit)
    m.set_property("request_id", RECORD.request_id)
    m.set_property("status", RECORD.status)
    m.flush_sync()


def per_call_us(fn, n: int, repeats: int) -> dict[str, float]:
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        rounds.append(1e6 * (time.perf_counter() - start) / n)
    return {"median_us": round(statistics.median(rounds), 2), "min_us": round(min(rounds), 2)}


def import_ms(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    runs = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout)
        for _ in range(3)
    ]
    return round(1000 * min(runs), 1)


def requirements(dist: str, seen: set[str] | None = None) -> set[str]:
    """`dist` and everything it installs, by name (from the installed metadata)."""
    seen = set() if seen is None else seen
    name = dist.lower().replace("_", "-")
    if name in seen:
        return seen
    seen.add(name)
    for req in metadata.requires(dist) or []:
        if ";" in req and "extra ==" in req:
            continue
        dep = req.split(";")[0].split("[")[0]
        for sep in "<>=!~ (":
            dep = dep.split(sep)[0]
        with contextlib.suppress(metadata.PackageNotFoundError):
            requirements(dep.strip(), seen)
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="lines per round")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    os.environ["AWS_EMF_ENVIRONMENT"] = "Local"  # the library's stdout sink, no probing
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        library()  # first call resolves the environment; not timed
        metrics = our_writer(devnull)
        lib = per_call_us(library, args.n, args.repeats)
        own = per_call_us(lambda: metrics.request(RECORD), args.n, args.repeats)
    deps = sorted(requirements("aws-embedded-metrics") - {"aws-embedded-metrics"})
    result = {
        "what": "one per-request EMF line (8 metrics, 2 dimensions, 2 properties) to /dev/null",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "lines_per_round": args.n,
        "rounds": args.repeats,
        "aws_embedded_metrics": {
            "version": metadata.version("aws-embedded-metrics"),
            **lib,
            "import_ms": import_ms("aws_embedded_metrics.logger.metrics_logger_factory"),
            "installs": deps,
        },
        "gen3d_writer": {**own, "import_ms": import_ms("gen3d.serve.metrics")},
        "note": "gen3d.serve.metrics' import includes gen3d.serve.batching (numpy), which "
        "the server imports anyway",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
