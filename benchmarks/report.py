"""`gen3d bench report`: result documents -> README.md, PNG plots, seconds per image.

Everything in the README is computed from benchmarks/results/**/*.json; the only fixed
text is how to run the suites. A section per device (cpu, each GPU measured).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks import plots, targets
from benchmarks.environment import device_slug
from benchmarks.results_io import SECONDS_PER_IMAGE_FILE, load_documents

Doc = dict[str, Any]
REPO_ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- seconds per image


def seconds_per_image(docs: list[Doc]) -> list[dict[str, Any]]:
    """Entries for `gen3d cost --bench` (scripts/cost/bench.py's schema).

    Served throughput (server suite, batching on, best level) is what an instance
    bills for, so it is preferred; in-process numbers (model suite) fill in only where no
    served number exists for that backend, device and precision. Runs with a reduced
    step count (the GPU suite) are scaled to the model's default steps.
    """
    entries: list[dict[str, Any]] = []
    served_keys = set()
    for doc in docs:
        if doc["suite"] != "server":
            continue
        env, cfg = doc["environment"], doc["config"]
        rows = [r for r in doc["results"] if r["batching"] == "on" and r.get("throughput_per_s")]
        if not rows:
            continue
        best = max(rows, key=lambda r: r["throughput_per_s"])
        scale = _step_scale(cfg)
        precision = _precision(doc["results"][0]["backend"], cfg.get("precision", "fp32"))
        key = (cfg["backend"], env.get("device"), env.get("gpu_name"), precision)
        served_keys.add(key)
        entries.append(
            _entry(
                env,
                cfg["backend"],
                precision,
                best["max_batch_size"],
                scale / best["throughput_per_s"],
                f"served: gen3d bench server, concurrency {best['concurrency']}"
                + _scaled_note(cfg, scale),
            )
        )
    for doc in docs:
        if doc["suite"] != "model":
            continue
        env, cfg = doc["environment"], doc["config"]
        scale = _step_scale(cfg)
        for r in doc["results"]:
            key = (r["backend"], env.get("device"), env.get("gpu_name"), r["precision"])
            if key in served_keys or "seconds_per_image" not in r:
                continue
            entries.append(
                _entry(
                    env,
                    r["backend"],
                    r["precision"],
                    r["batch"],
                    scale * r["seconds_per_image"],
                    "in-process: gen3d bench model" + _scaled_note(cfg, scale),
                )
            )
    return entries


def _precision(backend: str, precision: str) -> str:
    return "n/a" if backend == "silhouette" else precision


def _step_scale(cfg: dict[str, Any]) -> float:
    steps, default = cfg.get("steps"), cfg.get("default_steps")
    if not steps or not default:
        return 1.0
    return (default[0] + default[1]) / (2 * steps)


def _scaled_note(cfg: dict[str, Any], scale: float) -> str:
    if scale == 1.0:
        return ""
    return (
        f"; measured at {cfg['steps']} steps per stage and scaled x{scale:.1f} to the "
        f"default {cfg['default_steps']} (an upper bound: fixed costs scale too)"
    )


def _entry(
    env: dict[str, Any], backend: str, precision: str, batch: int, spi: float, source: str
) -> dict[str, Any]:
    return {
        "backend": backend,
        "device": env.get("device", "cpu"),
        "gpu_name": env.get("gpu_name"),
        "instance_type": env.get("instance_type"),
        "precision": precision,
        "batch": int(batch),
        "seconds_per_image": round(spi, 6),
        "source": source,
        "measured_at": env.get("timestamp"),
    }


# ---------------------------------------------------------------- markdown helpers


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return [*out, ""]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value).replace("|", "/")


def _med(summary: dict[str, Any] | None, key: str = "median") -> float | None:
    return (summary or {}).get(key)


# ---------------------------------------------------------------- sections

HOW_TO_RUN = """\
## How to run

| what | command | bound |
|---|---|---|
| CPU suite + this report | `make bench` | <= 10 min on 2 cores |
| GPU suite (any CUDA GPU) | `benchmarks/gpu_check.sh OUTDIR` | <= 8 min; no GPU: exit 2 |
| one suite | `gen3d bench SUITE --help` (model, server, coldstart, peers) | per level |
| report only | `gen3d bench report` | seconds |

Every suite writes `results/<device>/<suite>_<name>.json` (device `cpu`, or `cuda-<gpu name>`),
each with an environment fingerprint (CPU model and cores, load average at start and end,
GPU name, driver, CUDA, torch, git commit). `gen3d bench report` rebuilds this page, the
plots in `plots/` and `results/seconds_per_image.json`, which `gen3d cost --bench` reads.

### On a GPU instance: ml.g4dn (T4, 16 GB) and ml.g5 (A10G, 24 GB)

SageMaker endpoints cannot run an interactive benchmark, so run it on the same GPU
outside an endpoint: a SageMaker notebook instance or an EC2 instance of the same family
(`g4dn.xlarge` = ml.g4dn.xlarge's T4, `g5.xlarge` = ml.g5.xlarge's A10G), with a Deep
Learning AMI or any image with an NVIDIA driver:

```bash
git clone <this repo> gen3d && cd gen3d
make setup                       # pip's default torch wheel on Linux x86_64 is a CUDA build
# T4 (ml.g4dn): bf16 is refused there (compute capability 7.5), so it is recorded as skipped
make bench DEVICE=cuda INSTANCE_TYPE=ml.g4dn.xlarge
# A10G (ml.g5)
make bench DEVICE=cuda INSTANCE_TYPE=ml.g5.xlarge
# or only the bounded GPU check, results in a folder of your choice:
GEN3D_INSTANCE_TYPE=ml.g5.xlarge benchmarks/gpu_check.sh /tmp/gpu-results
cp -r /tmp/gpu-results/* benchmarks/results/ && .venv/bin/gen3d bench report
```

`make bench DEVICE=cuda` runs the GPU suite: the proxy `full` model (writes its 8.5 GB of
random weights once to `~/.cache/gen3d/bench-models`) at fp32 / fp16 / bf16 / int8 and
batch 1, 2, 4, 8 with a reduced step count (the full 25 + 25 steps would take minutes per
sample on a T4), then a server run. Commit the new `results/cuda-*` folder and this page;
the instance type you pass is written into `seconds_per_image.json`, where the cost model
prefers entries measured on the instance type it prices.
"""


def _env_rows(docs: list[Doc]) -> list[str]:
    rows = []
    for doc in docs:
        env = doc["environment"]
        rows.append(
            [
                f"{doc['suite']}/{doc['name']}",
                env.get("timestamp"),
                env.get("cpu_model"),
                f"{env.get('cpu_cores_usable')}/{env.get('cpu_cores')}",
                env.get("torch"),
                env.get("gpu_name"),
                env.get("driver"),
                env.get("cuda") if env.get("gpu_name") else None,
                _load(env.get("load_average")) + " -> " + _load(doc.get("load_average_end")),
                env.get("git_commit"),
            ]
        )
    return _table(
        [
            "run",
            "when (UTC)",
            "CPU",
            "cores usable/total",
            "torch",
            "GPU",
            "driver",
            "CUDA",
            "load avg 1/5/15 min start -> end",
            "commit",
        ],
        rows,
    )


def _load(values: list[float] | None) -> str:
    return "/".join(f"{v:.2f}" for v in values) if values else "-"


def _targets_section(docs: list[Doc]) -> list[str]:
    rows = [
        [t.target, t.value, _status(t.status), t.detail, f"`{t.command}`"]
        for t in targets.evaluate(docs)
    ]
    return _table(["target", "measured", "status", "detail", "command"], rows)


def _status(status: str) -> str:
    return {"met": "**met**", "missed": "**missed**"}.get(status, status)


def _model_section(docs: list[Doc]) -> list[str]:
    rows = []
    for doc in docs:
        steps = doc["config"].get("steps")
        for r in doc["results"]:
            per = r.get("per_sample_ms", {})
            rows.append(
                [
                    doc["name"],
                    r["precision"],
                    r["batch"],
                    _med(per),
                    f"{_cell(_med(per, 'p25'))} - {_cell(_med(per, 'p75'))}",
                    _med(per, "n"),
                    r.get("throughput_per_s"),
                    r.get("peak_memory_mb"),
                    r.get("memory_kind"),
                    r.get("clock"),
                    steps or "default",
                    r.get("error"),
                ]
            )
    return _table(
        [
            "model",
            "precision",
            "batch",
            "ms/sample (median)",
            "IQR (ms)",
            "repeats",
            "samples/s",
            "peak memory (MB)",
            "memory",
            "clock",
            "steps",
            "error",
        ],
        rows,
    )


def _server_section(docs: list[Doc]) -> list[str]:
    rows = []
    for doc in docs:
        for r in doc["results"]:
            lat = r.get("latency_ms", {})
            meta = r.get("server_metadata", {})
            rows.append(
                [
                    doc["name"],
                    r["batching"],
                    r["concurrency"],
                    r["throughput_per_s"],
                    _med(r.get("throughput_windows_per_s"), "iqr"),
                    _med(lat),
                    _med(lat, "p90"),
                    _med(lat, "p99"),
                    sum(r["errors"].values()),
                    r.get("in_process_per_s"),
                    r.get("serving_efficiency"),
                    _med(meta.get("batch_size"), "mean"),
                    _med(meta.get("queue_ms")),
                    _med(r.get("ping_ms"), "p99"),
                    r.get("ok"),
                ]
            )
    out = _table(
        [
            "backend",
            "batching",
            "clients",
            "req/s",
            "req/s IQR (1 s windows)",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "errors",
            "in-process /s",
            "efficiency",
            "mean batch",
            "queue ms (median)",
            "/ping p99 ms",
            "answers",
        ],
        rows,
    )
    for doc in docs:
        ref = doc["config"].get("in_process_reference", {})
        if ref:
            out.append(
                f"- {doc['name']}: in-process reference (same run) at batch "
                + ", ".join(
                    f"{b}: {_cell(t.get('throughput_per_s'))}/s"
                    for b, t in ref.get("by_batch", {}).items()
                )
                + f"; per request the server also decodes the PNG "
                f"({_cell(_med(ref.get('decode_request_ms')))} ms) and encodes the GLB "
                f"({_cell(_med(ref.get('encode_glb_ms')))} ms), which the in-process "
                "reference does not."
            )
    return [*out, ""]


def _batching_ratio(docs: list[Doc]) -> list[str]:
    """Issue 3's question: batching on vs off, proxy, at concurrency 1, 4, 16."""
    out = []
    for doc in docs:
        modes = {r["batching"] for r in doc["results"]}
        if modes != {"on", "off"}:
            continue
        by = {(r["batching"], r["concurrency"]): r for r in doc["results"]}
        rows = []
        for level in sorted({r["concurrency"] for r in doc["results"]}):
            on, off = by.get(("on", level)), by.get(("off", level))
            if not on or not off:
                continue
            ratio = (
                on["throughput_per_s"] / off["throughput_per_s"]
                if off["throughput_per_s"]
                else None
            )
            rows.append(
                [
                    level,
                    on["throughput_per_s"],
                    _med(on["latency_ms"]),
                    _med(on["latency_ms"], "p99"),
                    off["throughput_per_s"],
                    _med(off["latency_ms"]),
                    _med(off["latency_ms"], "p99"),
                    ratio,
                ]
            )
        out += [
            f"**{doc['name']}: dynamic batching on (max batch "
            f"{doc['config']['max_batch_size']}, {doc['config']['max_batch_delay_ms']:g} ms) "
            "vs off (GEN3D_MAX_BATCH_SIZE=1)**",
            "",
        ]
        out += _table(
            [
                "clients",
                "on req/s",
                "on p50 ms",
                "on p99 ms",
                "off req/s",
                "off p50 ms",
                "off p99 ms",
                "on/off throughput",
            ],
            rows,
        )
    return out


def _coldstart_section(docs: list[Doc]) -> list[str]:
    rows = []
    for doc in docs:
        for r in doc["results"]:
            ready = r.get("ready_s", {})
            rows.append(
                [
                    doc["name"],
                    r["artifact"],
                    _med(ready),
                    f"{_cell(_med(ready, 'min'))} - {_cell(_med(ready, 'max'))}",
                    _med(ready, "n"),
                    _med(r.get("import_s")),
                    _med(r.get("load_s")),
                    _med(r.get("warmup_s")),
                    _med(r.get("other_s")),
                    _med(r.get("extract_s")),
                    _med(r.get("total_s")),
                    r.get("artifact_bytes"),
                ]
            )
    return _table(
        [
            "backend",
            "artifact",
            "ready s (median)",
            "min - max",
            "runs",
            "import s",
            "load s",
            "warm-up s",
            "other s",
            "extract s",
            "extract + ready s",
            "artifact bytes",
        ],
        rows,
    )


def _peers_section(docs: list[Doc]) -> list[str]:
    rows = []
    for doc in docs:
        for r in doc["results"]:
            o, p = r["ours"], r["litserve"]
            rows.append(
                [
                    doc["name"],
                    r["concurrency"],
                    o["throughput_per_s"],
                    _med(o["latency_ms"]),
                    _med(o["latency_ms"], "p99"),
                    p["throughput_per_s"],
                    _med(p["latency_ms"]),
                    _med(p["latency_ms"], "p99"),
                    r["throughput_ratio"],
                    r["p99_ratio"],
                    sum(o["errors"].values()) + sum(p["errors"].values()),
                ]
            )
    out = _table(
        [
            "backend",
            "clients",
            "ours req/s",
            "ours p50",
            "ours p99",
            "LitServe req/s",
            "LitServe p50",
            "LitServe p99",
            "throughput ours/peer",
            "p99 ours/peer",
            "errors",
        ],
        rows,
    )
    for doc in docs:
        bound = doc["config"].get("bound_to")
        out.append(
            f"- {doc['name']}: LitServe {doc['environment'].get('litserve')}, "
            f"max_batch_size {doc['config']['max_batch_size']}, batch_timeout "
            f"{doc['config']['max_batch_delay_ms'] / 1000:g} s; listening on {bound}."
        )
    return [*out, ""]


def _skipped(docs: list[Doc]) -> list[str]:
    lines = []
    for doc in docs:
        for s in doc.get("skipped", []):
            lines.append(f"- {doc['suite']}/{doc['name']}: {s['what']}: {s['why']}")
        for note in doc.get("notes", []):
            lines.append(f"- {doc['suite']}/{doc['name']} (note): {note}")
    return [*(lines or ["- nothing"]), ""]


def device_section(device: str, docs: list[Doc], plot_dir: Path, readme_dir: Path) -> list[str]:
    by_suite: dict[str, list[Doc]] = defaultdict(list)
    for doc in docs:
        by_suite[doc["suite"]].append(doc)
    made = plots.make_plots(docs, plot_dir, device)
    out = [f"## Results on `{device}`", "", "### Targets: where we stand", ""]
    out += _targets_section(docs)
    out += ["### Environment", "", *_env_rows(docs)]
    if by_suite["model"]:
        out += [
            "### Model, in-process (`gen3d bench model`)",
            "",
            "Median of the repeats after warm-up; IQR = 25th to 75th percentile.",
            "",
        ]
        out += _model_section(by_suite["model"])
    if by_suite["server"]:
        out += [
            "### Server: real gunicorn on 127.0.0.1, closed loop (`gen3d bench server`)",
            "",
            "Request: one 256x256 RGBA PNG (alpha = mask), answer: GLB. "
            "Efficiency = served req/s / in-process samples/s of the same backend at "
            "batch min(clients, max batch), measured in the same run.",
            "",
        ]
        out += _server_section(by_suite["server"])
        out += _batching_ratio(by_suite["server"])
    if by_suite["coldstart"]:
        out += ["### Cold start: process start -> first /ping 200 (`gen3d bench coldstart`)", ""]
        out += _coldstart_section(by_suite["coldstart"])
    if by_suite["peers"]:
        out += [
            "### Peer: LitServe on the same backend (`gen3d bench peers`)",
            "",
            "Both servers up at once, each level run on ours then on LitServe; JSON in "
            "and out on both (our codecs), so the work around the model is the same.",
            "",
        ]
        out += _peers_section(by_suite["peers"])
    out += ["### Skipped, not measured, notes", "", *_skipped(docs)]
    if made:
        out += ["### Plots", ""]
        for key, path in made.items():
            out += [f"![{device} {key}]({path.relative_to(readme_dir).as_posix()})", ""]
    return out


def build_report(results: Path, readme: Path, plot_dir: Path, spi_path: Path) -> dict[str, Any]:
    documents = load_documents(results)
    docs = [d for _, d in documents]
    by_device: dict[str, list[Doc]] = defaultdict(list)
    for doc in docs:
        by_device[device_slug(doc["environment"])].append(doc)
    lines = [
        "# Benchmarks",
        "",
        f"_Generated by `gen3d bench report` from {len(docs)} result file(s) under "
        f"`{_rel(results)}` on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC. "
        "Do not edit by hand: change the suites or rerun them._",
        "",
        "Numbers from a shared 2-core VM are noisy: each file records the load average at "
        "its start and end. Targets are judged on the worst measured configuration.",
        "",
        HOW_TO_RUN,
    ]
    if not by_device.get("cpu") or not any(k != "cpu" for k in by_device):
        lines += [
            "**No GPU results yet**: the dynamic-batching target on a GPU is not "
            "measured here; run `benchmarks/gpu_check.sh` on a CUDA instance.",
            "",
        ]
    for device in sorted(by_device, key=lambda d: (d != "cpu", d)):
        lines += device_section(device, by_device[device], plot_dir, readme.parent)
    entries = seconds_per_image(docs)
    spi_path.parent.mkdir(parents=True, exist_ok=True)
    spi_path.write_text(
        json.dumps(
            {
                "generated_by": "gen3d bench report",
                "schema": "scripts/cost/bench.py",
                "entries": entries,
            },
            indent=1,
        )
        + "\n"
    )
    lines += [
        "## Seconds per image (input of `gen3d cost --bench`)",
        "",
        f"`{_rel(spi_path)}`: served throughput where measured, else in-process.",
        "",
    ]
    lines += _table(
        ["backend", "device", "GPU", "instance", "precision", "batch", "s/image", "source"],
        [
            [
                e["backend"],
                e["device"],
                e["gpu_name"],
                e["instance_type"],
                e["precision"],
                e["batch"],
                e["seconds_per_image"],
                e["source"],
            ]
            for e in entries
        ],
    )
    readme.write_text("\n".join(lines).rstrip() + "\n")
    return {"documents": len(docs), "devices": sorted(by_device), "entries": len(entries)}


def _rel(path: Path) -> str:
    try:
        return path.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


def default_paths() -> dict[str, Path]:
    root = REPO_ROOT / "benchmarks"
    return {
        "results": root / "results",
        "readme": root / "README.md",
        "plots": root / "plots",
        "seconds_per_image": root / "results" / SECONDS_PER_IMAGE_FILE,
    }
