"""Goodput under overload, before vs after (issue 12): clients that retry at once.

Each of N client threads (127.0.0.1 only, bounded by time and count) posts the same
256 x 256 RGBA PNG in a loop; a 503 is retried immediately, as an impatient client does.
Goodput is completed (200) requests per second. A server that sheds load only after
reading and decoding a body spends its CPU on requests it then refuses, so its goodput
falls as clients are added; one that refuses before reading holds its goodput.

"before" is `serve/` at `--base`, exported with git archive (tools/observability_overhead.py
does the same); "after" is this checkout. Both run the image's gunicorn set-up with the
same settings, in turn, one level at a time.

    .venv/bin/python tools/overload_probe.py --base 01f9d5e --backend silhouette \\
        --out benchmarks/results/cpu/overload_probe_silhouette.json
    .venv/bin/python tools/overload_probe.py --base 01f9d5e --backend proxy --max-queue 4 \\
        --out benchmarks/results/cpu/overload_probe_proxy-tiny.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from gen3d.benchmarks.payloads import rgba_png
from gen3d.serve.launcher import ManagedProcess, free_port, gunicorn_command

sys.path.insert(0, str(Path(__file__).resolve().parent))
from observability_overhead import export_base


def start(name: str, env: dict[str, str], pythonpath: str | None, log_dir: Path) -> ManagedProcess:
    port = free_port()
    full = {
        **env,
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "GEN3D_BIND_HOST": "127.0.0.1",
        "PYTHONPATH": pythonpath or "",
    }
    server = ManagedProcess(gunicorn_command(), port, log_dir / f"{name}.log", env=full, name=name)
    server.wait_ready(120)
    return server


def load(url: str, body: bytes, clients: int, duration_s: float, max_requests: int) -> dict:
    """`clients` threads posting until `duration_s` passes or `max_requests` are sent."""
    counts = {"ok": 0, "refused": 0, "other": 0, "sent": 0}
    lock = threading.Lock()
    stop_at = time.monotonic() + duration_s

    def client() -> None:
        session = requests.Session()
        while time.monotonic() < stop_at:
            with lock:
                if counts["sent"] >= max_requests:
                    return
                counts["sent"] += 1
            try:
                status = session.post(
                    url + "/invocations",
                    data=body,
                    headers={"Content-Type": "image/png"},
                    timeout=60,
                ).status_code
            except requests.RequestException:
                status = 0
            key = "ok" if status == 200 else "refused" if status == 503 else "other"
            with lock:
                counts[key] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    return {
        **counts,
        "elapsed_s": round(elapsed, 2),
        "goodput_per_s": round(counts["ok"] / elapsed, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="01f9d5e", help="the 'before' commit")
    parser.add_argument("--backend", choices=("silhouette", "proxy"), default="silhouette")
    parser.add_argument("--levels", default="1,4,16,64,100", help="client counts")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per level")
    parser.add_argument("--max-requests", type=int, default=20_000, help="per level")
    parser.add_argument("--max-queue", type=int, default=64, help="GEN3D_MAX_QUEUE")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    body = rgba_png(256)
    with tempfile.TemporaryDirectory(prefix="gen3d-overload-") as tmp_name:
        tmp = Path(tmp_name)
        env = {"GEN3D_BACKEND": args.backend, "GEN3D_MAX_QUEUE": str(args.max_queue)}
        if args.backend == "proxy":
            from gen3d.model_opt.proxy_model import init_proxy_model
            from gen3d.serve.backends.proxy.model import config_for

            init_proxy_model(config_for("tiny"), 0, tmp / "proxy")
            env.update(GEN3D_MODEL_DIR=str(tmp / "proxy"), GEN3D_DEVICE="cpu")
        base_path = str(export_base(args.base, tmp / "base"))
        results: dict[str, dict] = {"before": {}, "after": {}}
        for level in levels:  # both servers at each level in turn: drift hits both alike
            for name, path in (("before", base_path), ("after", None)):
                server = start(name, env, path, tmp)
                try:
                    row = load(server.url, body, level, args.duration, args.max_requests)
                finally:
                    server.stop(10)
                results[name][str(level)] = row
                print(f"{name:6} {level:4d} clients: {row['goodput_per_s']:7.2f} ok/s  {row}")
    summary = {}
    for name, rows in results.items():
        peak = max(r["goodput_per_s"] for r in rows.values())
        at_max = rows[str(levels[-1])]["goodput_per_s"]
        summary[name] = {
            "peak_per_s": peak,
            f"at_{levels[-1]}_per_s": at_max,
            "ratio_to_peak": round(at_max / peak, 3) if peak else None,
        }
    doc = {
        "what": __doc__.split("\n\n")[0],
        "command": " ".join(["python", *sys.argv]),
        "backend": args.backend,
        "settings": env | {"GEN3D_MODEL_DIR": "(a proxy tiny dir)"}
        if args.backend == "proxy"
        else env,
        "base_commit": args.base,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_after": os.getloadavg(),
        "summary": summary,
        "levels": results,
    }
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
