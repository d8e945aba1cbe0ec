"""Markdown sections of benchmarks/README.md, one function per suite, from documents."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from gen3d.benchmarks import plots, targets

Doc = dict[str, Any]

# ---------------------------------------------------------------- markdown helpers


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
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
    return table(
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
    return table(["target", "measured", "status", "detail", "command"], rows)


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
    return table(
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
    out = table(
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
        out += table(
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
    return table(
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
            b = r.get("byoc") or {}  # documents from before the BYOC peer have none
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
                    b.get("throughput_per_s"),
                    _med(b.get("latency_ms")),
                    _med(b.get("latency_ms"), "p99"),
                    r["throughput_ratio"],
                    r["p99_ratio"],
                    r.get("byoc_throughput_ratio"),
                    r.get("byoc_p99_ratio"),
                    (r.get("ceiling") or {}).get("throughput_per_s"),  # newer runs only
                    r.get("ceiling_ratio"),
                    sum(sum(s.get("errors", {}).values()) for s in (o, p, b)),
                ]
            )
    out = table(
        [
            "backend",
            "clients",
            "ours req/s",
            "ours p50",
            "ours p99",
            "LitServe req/s",
            "LitServe p50",
            "LitServe p99",
            "BYOC req/s",
            "BYOC p50",
            "BYOC p99",
            "throughput ours/LitServe",
            "p99 ours/LitServe",
            "throughput ours/BYOC",
            "p99 ours/BYOC",
            "in-process ceiling req/s",
            "throughput ours/ceiling",
            "errors",
        ],
        rows,
    )
    for doc in docs:
        bound = doc["config"].get("bound_to")
        workers = doc["config"].get("byoc_workers")
        byoc = (
            f"; BYOC peer: {workers} gunicorn sync worker(s)" if workers else "; no BYOC peer run"
        )
        out.append(
            f"- {doc['name']}: LitServe {doc['environment'].get('litserve')}, "
            f"max_batch_size {doc['config']['max_batch_size']}, batch_timeout "
            f"{doc['config']['max_batch_delay_ms'] / 1000:g} s{byoc}; listening on {bound}."
        )
    return [*out, ""]


SERVER_LABELS = {"ours": "ours", "litserve": "LitServe", "byoc": "BYOC peer"}


def _overload_section(docs: list[Doc]) -> list[str]:
    rows = []
    for doc in docs:
        for r in doc["results"]:
            for server, label in SERVER_LABELS.items():
                m = r.get(server)
                if not m:
                    continue
                other = sum(m.get("other_statuses", {}).values())
                rows.append(
                    [
                        doc["name"],
                        label,
                        r["clients"],
                        m["goodput_per_s"],
                        m["refused_per_s"],
                        other,
                        m["connection_errors"],
                        _med(m["latency_ms"]),
                        _med(m["latency_ms"], "p99"),
                        _med(m["attempt_latency_ms"], "p99"),
                        _med(m["attempts_per_success"], "mean"),
                        _med(m.get("ping_ms")),
                        _med(m.get("ping_ms"), "p99"),
                        _med(m.get("ping_ms"), "max"),
                    ]
                )
    out = table(
        [
            "backend",
            "server",
            "clients",
            "goodput /s",
            "refused (503) /s",
            "other answers",
            "connection errors",
            "p50 ms (with retries)",
            "p99 ms (with retries)",
            "attempt p99 ms",
            "attempts per success",
            "/ping p50 ms",
            "/ping p99 ms",
            "/ping max ms",
        ],
        rows,
    )
    summary_rows = []
    for doc in docs:
        for server, figures in doc.get("summary", {}).items():
            if figures:
                summary_rows.append(
                    [
                        doc["name"],
                        SERVER_LABELS.get(server, server),
                        figures["peak_goodput_per_s"],
                        figures["peak_at_clients"],
                        figures["largest_level"],
                        figures["goodput_at_largest_per_s"],
                        figures["ratio_to_peak"],
                    ]
                )
    out += table(
        [
            "backend",
            "server",
            "peak goodput /s",
            "at clients",
            "largest level",
            "goodput there /s",
            "ratio to peak",
        ],
        summary_rows,
    )
    for doc in docs:
        config = doc["config"]
        extra = config.get("extra_env") or {}
        workers = config.get("byoc_workers")
        out.append(
            f"- {doc['name']}: our GEN3D_MAX_QUEUE {config.get('ours_max_queue')}"
            + (f", extra environment {extra}" if extra else "")
            + (f"; BYOC peer: {workers} gunicorn sync worker(s)" if workers else "")
            + f"; window {config['duration_s']:g} s per level; health routes "
            f"{config.get('health_paths')}; listening on {config.get('bound_to')}."
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


def _latency_section(docs: list[Doc]) -> list[str]:
    rows = []
    for doc in docs:
        size = doc["config"].get("image_size")
        for r in doc["results"]:
            rss = [v for v in r.get("peak_rss_mb", {}).values() if v]
            rows.append(
                [
                    doc["name"],
                    f"{size}x{size}",
                    r.get("start_to_ready_s"),
                    _med(r.get("latency_s")),
                    _med(r.get("latency_s"), "p90"),
                    _med(r.get("latency_s"), "n"),
                    round(max(rss), 1) if rss else None,
                ]
            )
    return table(
        [
            "backend",
            "image",
            "start -> ready s",
            "latency s (median)",
            "p90",
            "requests",
            "peak RSS MB (largest process)",
        ],
        rows,
    )


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
    if by_suite["latency"]:
        out += [
            "### One client, default server (`gen3d bench latency`)",
            "",
            "Sequential RGBA PNG -> GLB requests; peak RSS is VmHWM from /proc.",
            "",
        ]
        out += _latency_section(by_suite["latency"])
    if by_suite["peers"]:
        out += [
            "### Peers: LitServe and an AWS-BYOC-style server on the same backend "
            "(`gen3d bench peers`)",
            "",
            "All servers up at once, each level run on the three in turn (rows that record "
            "an `order` went first in turn; earlier ones ran ours, then LitServe, then the "
            "BYOC peer); in runs whose config records `pause_idle: true` the two not measured "
            "were paused (SIGSTOP), before that they idled beside it. Rows that record "
            "`slices` > 1 measured each server in that many windows, taken in turn with "
            "the others' and in reverse order every other round, and pooled: this "
            "machine's cores slow down by up to 2x for tens of seconds at a time "
            "(docs/measurements.md), which one window per server left on one server "
            "alone. The BYOC peer is "
            "AWS's scikit-learn BYOC example's way: Flask under gunicorn sync workers, "
            "one per core, each with its own model, one request at a time; no batching, "
            "queue or admission control. JSON in and out on all (our codecs), so the "
            "work around the model is the same.",
            "",
        ]
        out += _peers_section(by_suite["peers"])
    if by_suite["gpucheck"]:
        from gen3d.benchmarks.gpu_report import device_gpucheck_section

        out += device_gpucheck_section(device, by_suite["gpucheck"], plot_dir, readme_dir)
    if by_suite["overload"]:
        out += [
            "### Overload: goodput with clients that retry every 503 at once "
            "(`gen3d bench overload`)",
            "",
            "N client threads post the JSON request in a loop; a 503 or a connection error "
            "is retried at once (Retry-After ignored), any other answer ends the request. "
            "Goodput = 200s per second in the window after a warm-up; latency of a success "
            "counts from its first attempt (retries included); attempt p99 is the "
            "successful attempt alone. /ping is probed during the window (LitServe: "
            "/health). Ratio to peak = goodput at the largest level / peak goodput "
            "(1: no collapse).",
            "",
        ]
        out += _overload_section(by_suite["overload"])
    out += ["### Skipped, not measured, notes", "", *_skipped(docs)]
    if made:
        out += ["### Plots", ""]
        for key, path in made.items():
            out += [f"![{device} {key}]({path.relative_to(readme_dir).as_posix()})", ""]
    return out
