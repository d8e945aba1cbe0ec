"""The GPU check's document as text and plots: the summary table it prints, its three
PNGs, and the section `gen3d bench report` renders for each GPU (one table per GPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

Doc = dict[str, Any]

# GPUs of the SageMaker instances the cost model prices; shown "not measured" until a
# gpucheck document from that GPU is in benchmarks/results (benchmarks/README.md says how).
EXPECTED_GPUS = {"NVIDIA T4": "ml.g4dn.xlarge", "NVIDIA A10G": "ml.g5.xlarge"}


def _f(value: Any, fmt: str = "{:.3g}") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return fmt.format(value) if value == value else "-"
    return str(value)


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(_f(c) for c in cells) + " |"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return [*out, *(_row(r) for r in rows), ""]


def gpu_label(doc: Doc) -> str:
    env = doc["environment"]
    if env.get("device") != "cuda":
        return f"cpu ({env.get('cpu_model')})" + (", smoke rehearsal" if env.get("smoke") else "")
    return (
        f"{env.get('gpu_name')} (compute {env.get('gpu_capability')}, "
        f"{_f(env.get('gpu_memory_mb'))} MiB, driver {env.get('driver')}, CUDA {env.get('cuda')})"
    )


def batching_ratio(doc: Doc) -> float | None:
    """Batcher throughput at batch 8 over batch 1."""
    rates = {
        r["batch"]: r["samples_per_s"]
        for r in doc.get("summary", {}).get("batcher", [])
        if "samples_per_s" in r
    }
    return rates[8] / rates[1] if 1 in rates and 8 in rates else None


def stage_rows(doc: Doc) -> list[list[Any]]:
    rows = []
    for precision, r in doc.get("summary", {}).get("stages", {}).items():
        if "skipped" in r:
            rows.append([precision, *["-"] * 6, f"skipped: {r['skipped']}"])
            continue
        s = r["stages_ms"]
        rows.append(
            [
                precision,
                s["encoder"]["median"],
                s["stage1_step"]["median"],
                s["stage2_step"]["median"],
                s["decoder"]["median"],
                r["predict_ms"]["median"],
                r["full_steps_model_ms"],
                "",
            ]
        )
    return rows


STAGE_HEADER = [
    "precision",
    "encoder ms",
    "stage-1 step ms",
    "stage-2 step ms",
    "decoder ms",
    "predict ms (reduced steps)",
    "model ms at 25+25 steps",
    "note",
]


def batcher_rows(doc: Doc) -> list[list[Any]]:
    rows = []
    for r in doc.get("summary", {}).get("batcher", []):
        if "skipped" in r:
            rows.append([r["batch"], "-", "-", "-", "-", r["skipped"]])
        else:
            formed = ",".join(str(b) for b in r["batches_formed"])
            rows.append(
                [r["batch"], r["samples_per_s"], formed, r["peak_memory_mb"], r["memory_kind"], ""]
            )
    return rows


BATCHER_HEADER = ["batch", "samples/s", "batches formed", "peak memory MiB", "memory", "note"]


def served_rows(doc: Doc) -> list[list[Any]]:
    rows = []
    for r in doc.get("summary", {}).get("served", {}).get("levels", []):
        lat = r.get("latency_ms", {})
        rows.append(
            [
                r["batching"],
                r["concurrency"],
                r["throughput_per_s"],
                lat.get("median"),
                lat.get("p99"),
                sum(r.get("errors", {}).values()),
                "nginx + gunicorn" if r.get("behind_nginx") else "gunicorn alone",
            ]
        )
    return rows


SERVED_HEADER = ["batching", "clients", "req/s", "p50 ms", "p99 ms", "errors", "front"]


def compile_line(doc: Doc) -> str:
    c = doc.get("summary", {}).get("compile")
    if not c:
        return "compile cache: not measured"
    cold, warm = c["cold"], c["warm"]
    return (
        f"compile cache ({', '.join(c['stages'])}): first call cold {cold['first_call_s']:.1f} s "
        f"(compile ~{cold['compile_s']:.1f} s), warm from the saved cache "
        f"{warm['first_call_s']:.1f} s (compile ~{warm['compile_s']:.1f} s); cache "
        f"{c['cache_mb']:.1f} MiB in {c['cache_files']} files"
    )


def summary_lines(doc: Doc) -> list[str]:
    """The table the check prints (and writes as summary.md)."""
    cfg, summary = doc["config"], doc.get("summary", {})
    w = summary.get("weights", {})
    lines = [
        f"## GPU check: proxy {cfg['size']} on {gpu_label(doc)}",
        "",
        f"- weights: {_f(w.get('weights_mb'))} MiB {w.get('dtype', '-')} drawn on "
        f"{w.get('drawn_on', '-')} in {_f(w.get('total_s'))} s (seed {cfg['seed']})",
        f"- flow steps per stage in predict / batcher / server: {cfg['steps']}"
        f" (serving precision {cfg['serve_precision']})",
        "",
        "Stage latency, batch 1 (median):",
        "",
        *_table(STAGE_HEADER, stage_rows(doc)),
        f"Batcher (batch 8 / batch 1 throughput: {_f(batching_ratio(doc), '{:.2f}')}x):",
        "",
        *_table(BATCHER_HEADER, batcher_rows(doc)),
        f"Server end to end (front: {summary.get('served', {}).get('front', '-')}):",
        "",
        *_table(SERVED_HEADER, served_rows(doc)),
        f"- {compile_line(doc)}",
        f"- wall time of the measurements: {_f(doc.get('duration_s'))} s",
    ]
    for s in doc.get("skipped", []):
        lines.append(f"- skipped {s['what']}: {s['why']}")
    return lines


def write_plots(doc: Doc, folder: Path, prefix: str = "") -> dict[str, Path]:
    """stages.png, batching.png, served.png (only those with data)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}
    summary, label = doc.get("summary", {}), gpu_label(doc).split(" (")[0]
    stages = {p: r for p, r in summary.get("stages", {}).items() if "stages_ms" in r}
    if stages:
        fig, ax = plt.subplots(figsize=(7, 4))
        names = ["encoder", "stage1_step", "stage2_step", "decoder"]
        width = 0.8 / len(stages)
        for i, (precision, r) in enumerate(stages.items()):
            xs = [j + i * width for j in range(len(names))]
            ax.bar(xs, [r["stages_ms"][n]["median"] for n in names], width, label=precision)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], names)
        ax.set_ylabel("ms (median, batch 1)")
        ax.set_title(f"proxy {doc['config']['size']} stage latency: {label}", fontsize=9)
        ax.legend(fontsize=7)
        made["stages"] = _save(fig, folder / f"{prefix}stages.png")
    rows = [r for r in summary.get("batcher", []) if "samples_per_s" in r]
    if rows:
        fig, (ax, mem) = plt.subplots(1, 2, figsize=(10, 4))
        xs = [r["batch"] for r in rows]
        ax.plot(xs, [r["samples_per_s"] for r in rows], "o-")
        _plain_log2(ax, xs)
        ax.set_xlabel("batch (through the Batcher)")
        ax.set_ylabel("samples/s")
        ax.set_title(f"batching: {label}", fontsize=9)
        mem.bar([str(x) for x in xs], [r["peak_memory_mb"] for r in rows])
        mem.set_xlabel("batch")
        mem.set_ylabel(f"peak memory MiB ({rows[0]['memory_kind']})")
        made["batching"] = _save(fig, folder / f"{prefix}batching.png")
    levels = summary.get("served", {}).get("levels", [])
    if levels:
        fig, ax = plt.subplots(figsize=(7, 4))
        for mode in ("on", "off"):
            rs = [r for r in levels if r["batching"] == mode]
            if rs:
                ax.plot(
                    [r["concurrency"] for r in rs],
                    [r["throughput_per_s"] for r in rs],
                    "o-",
                    label=f"batching {mode}",
                )
        _plain_log2(ax, sorted({r["concurrency"] for r in levels}))
        ax.set_xlabel("clients")
        ax.set_ylabel("req/s")
        front = summary["served"].get("front")
        ax.set_title(f"server end to end (front: {front}): {label}", fontsize=9)
        ax.legend(fontsize=7)
        made["served"] = _save(fig, folder / f"{prefix}served.png")
    return made


def _plain_log2(ax: Any, ticks: list[int]) -> None:
    """A log2 x axis labelled with the measured values (1, 4, 16), not 2^n."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def gpu_overview(docs: list[Doc]) -> list[str]:
    """`## GPUs`: one row per GPU with a gpucheck document, then the instance GPUs the
    cost model prices that nobody has measured yet."""
    checks = [d for d in docs if d.get("suite") == "gpucheck"]
    cuda = [d for d in checks if d["environment"].get("device") == "cuda"]
    rows = []
    for doc in cuda:
        env = doc["environment"]
        served = doc.get("summary", {}).get("served", {})
        best = max((r["throughput_per_s"] or 0.0 for r in served.get("levels", [])), default=None)
        rows.append(
            [
                env.get("gpu_name"),
                env.get("instance_type") or "-",
                "measured",
                env.get("timestamp"),
                _f(batching_ratio(doc), "{:.2f}"),
                best,
                served.get("front", "-"),
            ]
        )
    seen = {d["environment"].get("gpu_name") for d in cuda}
    for gpu, instance in EXPECTED_GPUS.items():
        if not any(gpu.lower() in str(name).lower() for name in seen):
            rows.append([gpu, instance, "not measured", "-", "-", "-", "-"])
    lines = [
        "## GPUs (`make gpu-check`)",
        "",
        "CUDA results from `make gpu-check` (proxy full); each GPU's own section below has "
        "its tables and plots. A GPU that says *not measured* has no results here yet: "
        "run the check on that instance family (How to run, above) and copy its folder in.",
        "",
        *_table(
            ["GPU", "instance", "status", "when (UTC)", "batch 8 / batch 1", "best req/s",
             "front"],
            rows,
        ),
    ]  # fmt: skip
    rehearsals = [d for d in checks if d not in cuda]
    if rehearsals:
        lines += [
            f"The `cpu` section's GPU-check table is the CPU rehearsal (`make gpu-rehearsal`, "
            f"proxy tiny, toy sizes): it proves the script, not a GPU ({len(rehearsals)} "
            "document(s)).",
            "",
        ]
    return lines


def device_gpucheck_section(
    device: str, docs: list[Doc], plot_dir: Path, readme_dir: Path
) -> list[str]:
    """One table set per document (so one per GPU in a `cuda-<gpu>` section)."""
    out: list[str] = []
    for doc in docs:
        out += [
            f"### GPU check on {gpu_label(doc)} (`make gpu-check`)",
            "",
            *summary_lines(doc)[2:],
            "",
        ]
        made = write_plots(doc, plot_dir, prefix=f"{device}_gpucheck_")
        for key, path in made.items():
            out += [f"![{device} gpucheck {key}]({path.relative_to(readme_dir).as_posix()})", ""]
    return out
