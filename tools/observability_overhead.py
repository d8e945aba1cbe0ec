"""Request-path overhead of logging and metrics (issue 17): before vs after, one run.

"before" is the server at `--base` (for issue 17: 01f9d5e, the commit its branch starts
from), exported with `git archive` and served from that copy; "after" is this checkout,
in three set-ups: defaults (JSON logs, no EMF), as deployed (JSON logs + EMF lines,
GEN3D_DEPLOYMENT set), and everything (+ Prometheus). With `--backend cube` all four run
a trivial backend (tests/fixtures/plugins: a unit cube, no model time), so what differs
is the request path itself; `--backend silhouette` repeats it with a real (small) model
call, to see the overhead against a whole request. Rounds are interleaved (A B C D,
A B C D, ...) on one keep-alive connection each, so drift on a shared machine hits every
set-up alike.

    .venv/bin/python tools/observability_overhead.py --base 01f9d5e \\
        --out benchmarks/results/observability_overhead_cube.json
    .venv/bin/python tools/observability_overhead.py --base 01f9d5e --backend silhouette \\
        --rounds 4 --requests 40 --out benchmarks/results/observability_overhead_silhouette.json
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from gen3d.serve.launcher import ManagedProcess, free_port, gunicorn_command
from gen3d.serve.synthetic import photo_and_mask

REPO = Path(__file__).resolve().parents[1]
PLUGINS = REPO / "tests" / "fixtures" / "plugins"


def export_base(commit: str, into: Path) -> Path:
    """`serve/` at `commit`, laid out as the gen3d.serve package under `into`."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", commit, "serve"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into / "src", filter="data")
    (into / "pkg" / "gen3d").mkdir(parents=True)
    (into / "pkg" / "gen3d" / "serve").symlink_to(into / "src" / "serve")
    return into / "pkg"


BACKENDS = {"cube": "gen3d_example_backend:CubeBackend", "silhouette": "silhouette"}


def request_body(backend: str) -> bytes:
    """cube: a 32x32 grey PNG (the cube ignores it); silhouette: a 64x64 synthetic photo
    with its mask as alpha (a real, if small, model call)."""
    if backend == "cube":
        image = np.full((32, 32, 3), 128, np.uint8)
    else:
        photo, mask = photo_and_mask(64, 0)
        image = np.dstack([photo, mask.astype(np.uint8) * 255])
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


def start(
    name: str, env: dict[str, str], log_dir: Path, cwd_path: str | None, backend: str
) -> ManagedProcess:
    port = free_port()
    full = {
        "GEN3D_BACKEND": BACKENDS[backend],
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "GEN3D_BIND_HOST": "127.0.0.1",
        "PYTHONPATH": os.pathsep.join(p for p in (cwd_path, str(PLUGINS)) if p),
        **env,
    }
    server = ManagedProcess(gunicorn_command(), port, log_dir / f"{name}.log", env=full, name=name)
    server.wait_ready(60)
    return server


def one_round(connection: http.client.HTTPConnection, body: bytes, n: int) -> list[float]:
    latencies = []
    for _ in range(n):
        started = time.perf_counter()
        connection.request(
            "POST",
            "/invocations",
            body,
            {"Content-Type": "image/png", "Accept": "model/gltf-binary"},
        )
        response = connection.getresponse()
        response.read()
        latencies.append(1000 * (time.perf_counter() - started))
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")
    return latencies


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def q(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 4)

    return {
        "median_ms": q(0.5),
        "p90_ms": q(0.9),
        "p99_ms": q(0.99),
        "mean_ms": round(statistics.fmean(values), 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="commit for 'before'")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=300, help="per round and set-up")
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="cube")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    body = request_body(args.backend)
    with tempfile.TemporaryDirectory(prefix="gen3d-overhead-") as tmp:
        work = Path(tmp)
        base_path = export_base(args.base, work)
        setups = {
            "before": ({}, str(base_path)),
            "after_defaults": ({}, None),
            "after_deployed_emf": ({"GEN3D_DEPLOYMENT": "bench"}, None),
            "after_all": ({"GEN3D_DEPLOYMENT": "bench", "GEN3D_PROMETHEUS": "1"}, None),
        }
        servers = {
            name: start(name, env, work, path, args.backend) for name, (env, path) in setups.items()
        }
        try:
            # "before" really is the base commit: no JSON log lines, no request log
            before_log = servers["before"].log_path.read_text()
            assert not before_log.lstrip().startswith("{"), "before server logs JSON"
            connections = {
                name: http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
                for name, s in servers.items()
            }
            for c in connections.values():
                one_round(c, body, 30)  # warm-up, not kept
            latencies: dict[str, list[float]] = {name: [] for name in servers}
            round_medians: dict[str, list[float]] = {name: [] for name in servers}
            for _ in range(args.rounds):
                for name, c in connections.items():
                    values = one_round(c, body, args.requests)
                    latencies[name] += values
                    round_medians[name].append(round(statistics.median(values), 4))
            logs = {name: s.log_path.read_text() for name, s in servers.items()}
        finally:
            for s in servers.values():
                s.stop(10)
    emf_lines = logs["after_deployed_emf"].count('"_aws"')
    results = {
        name: {**summary(v), "round_medians_ms": round_medians[name]}
        for name, v in latencies.items()
    }
    base = results["before"]["median_ms"]
    for r in results.values():
        r["median_delta_vs_before_ms"] = round(r["median_ms"] - base, 4)
    report = {
        "what": "client-side latency of POST /invocations, one keep-alive connection, "
        "sequential; rounds interleaved across set-ups",
        "backend": args.backend,
        "request": request_body.__doc__,
        "base_commit": subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", args.base], capture_output=True, text=True
        ).stdout.strip(),
        "after_commit": subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "arch": platform.machine(),
        },
        "rounds": args.rounds,
        "requests_per_round": args.requests,
        "emf_lines_written_by_after_deployed_emf": emf_lines,
        "setups": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
