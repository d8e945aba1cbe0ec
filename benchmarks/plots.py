"""PNG plots of the result documents of one device (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from gen3d.benchmarks import targets

Doc = dict[str, Any]


def _suite(docs: list[Doc], suite: str) -> list[Doc]:
    return [d for d in docs if d.get("suite") == suite]


def _plain_log_axis(ax: Any) -> None:
    """Log-scaled x axis with plain numbers (1, 2, 4 ... / 50, 100, 1000), no 2^n labels."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _legend(ax: Any, **kwargs: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, **kwargs)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def throughput_vs_concurrency(docs: list[Doc], path: Path) -> Path | None:
    """Served throughput per level (server suite), with LitServe and the BYOC peer from
    the peers suite, and the in-process ceiling each level is judged against (serving
    efficiency)."""
    servers, peers = _suite(docs, "server"), _suite(docs, "peers")
    if not servers and not peers:
        return None
    fig, (ax, eff) = plt.subplots(1, 2, figsize=(12, 4.5))
    for doc in servers:
        for mode in sorted({r["batching"] for r in doc["results"]}):
            rows = [r for r in doc["results"] if r["batching"] == mode]
            xs = [r["concurrency"] for r in rows]
            (line,) = ax.plot(
                xs,
                [r["throughput_per_s"] for r in rows],
                "o-",
                label=f"{doc['name']} batching {mode}",
            )
            ax.plot(
                xs,
                [r["in_process_per_s"] for r in rows],
                ":",
                color=line.get_color(),
                alpha=0.7,
                label=f"{doc['name']} {mode}: in-process ceiling",
            )
            eff.plot(
                xs,
                [r["serving_efficiency"] for r in rows],
                "o-",
                color=line.get_color(),
                label=f"{doc['name']} batching {mode}",
            )
    for doc in peers:
        xs = [r["concurrency"] for r in doc["results"]]
        ax.plot(
            xs,
            [r["litserve"]["throughput_per_s"] for r in doc["results"]],
            "s--",
            label=f"{doc['name']} LitServe (peers run)",
        )
        byoc = [
            (r["concurrency"], r["byoc"]["throughput_per_s"]) for r in doc["results"] if "byoc" in r
        ]
        if byoc:
            ax.plot(
                [x for x, _ in byoc],
                [y for _, y in byoc],
                "D--",
                label=f"{doc['name']} BYOC peer (peers run)",
            )
        ax.plot(
            xs,
            [r["ours"]["throughput_per_s"] for r in doc["results"]],
            "^--",
            label=f"{doc['name']} ours (peers run, JSON)",
        )
    ax.set(
        xscale="log",
        xlabel="concurrent clients (closed loop)",
        ylabel="requests / s",
        title="Throughput vs concurrency",
    )
    ax.set_xscale("log", base=2)
    _plain_log_axis(ax)
    _legend(ax)
    ax.grid(alpha=0.3)
    eff.axhline(targets.EFFICIENCY_MIN, color="red", ls="--", label="target 0.95")
    eff.axvline(
        targets.EFFICIENCY_FROM_CONCURRENCY, color="grey", ls=":", label="target applies from c=4"
    )
    eff.set_xscale("log", base=2)
    _plain_log_axis(eff)
    eff.set(
        xlabel="concurrent clients",
        ylabel="served / in-process throughput",
        title="Serving efficiency",
    )
    _legend(eff)
    eff.grid(alpha=0.3)
    return _save(fig, path)


def latency_distribution(docs: list[Doc], path: Path) -> Path | None:
    """Latency CDF per level, one panel per server configuration; /ping p99 per level."""
    panels = [
        (doc, mode)
        for doc in _suite(docs, "server")
        for mode in sorted({r["batching"] for r in doc["results"]})
    ]
    if not panels:
        return None
    fig, axes = plt.subplots(
        1, len(panels) + 1, figsize=(4.2 * (len(panels) + 1), 4), squeeze=False
    )
    ping_ax = axes[0][-1]
    for ax, (doc, mode) in zip(axes[0], panels, strict=False):
        rows = [r for r in doc["results"] if r["batching"] == mode]
        for r in rows:
            curve = r.get("latency_curve_ms") or []
            if curve:
                quantiles = [i / (len(curve) - 1) for i in range(len(curve))]
                ax.plot(curve, quantiles, label=f"c={r['concurrency']}")
        ax.set(
            xscale="log",
            xlabel="latency (ms)",
            ylabel="fraction of requests",
            title=f"{doc['name']} batching {mode}",
        )
        _plain_log_axis(ax)
        ax.axhline(0.99, color="grey", ls=":", lw=0.8)
        _legend(ax)
        ax.grid(alpha=0.3)
        ping_ax.plot(
            [r["concurrency"] for r in rows],
            [r.get("ping_ms", {}).get("p99") for r in rows],
            "o-",
            label=f"{doc['name']} {mode}",
        )
    ping_ax.axhline(targets.PING_P99_MAX_MS, color="red", ls="--", label="target 50 ms")
    ping_ax.set_xscale("log", base=2)
    _plain_log_axis(ping_ax)
    ping_ax.set(xlabel="concurrent clients", ylabel="/ping p99 (ms)", title="/ping p99 under load")
    _legend(ping_ax)
    ping_ax.grid(alpha=0.3)
    return _save(fig, path)


def batch_scaling(docs: list[Doc], path: Path) -> Path | None:
    """In-process throughput vs batch size (model suite), relative to batch 1 on the right."""
    models = _suite(docs, "model")
    if not models:
        return None
    fig, (ax, rel) = plt.subplots(1, 2, figsize=(11, 4))
    for doc in models:
        for precision in sorted({r["precision"] for r in doc["results"]}):
            rows = [
                r for r in doc["results"] if r["precision"] == precision and "throughput_per_s" in r
            ]
            if not rows:
                continue
            xs = [r["batch"] for r in rows]
            ys = [r["throughput_per_s"] for r in rows]
            ax.plot(xs, ys, "o-", label=f"{doc['name']} {precision}")
            base = next((r["throughput_per_s"] for r in rows if r["batch"] == 1), None)
            if base:
                rel.plot(xs, [y / base for y in ys], "o-", label=f"{doc['name']} {precision}")
    ax.set(xlabel="batch size", ylabel="samples / s", title="In-process throughput vs batch")
    ax.set_xscale("log", base=2)
    _plain_log_axis(ax)
    _legend(ax)
    ax.grid(alpha=0.3)
    rel.axhline(
        targets.GPU_BATCH_SPEEDUP_MIN, color="red", ls="--", label="GPU target 3x (proxy full)"
    )
    rel.set(xlabel="batch size", ylabel="throughput / batch-1 throughput", title="Batch scaling")
    rel.set_xscale("log", base=2)
    _plain_log_axis(rel)
    _legend(rel)
    rel.grid(alpha=0.3)
    return _save(fig, path)


def precision_comparison(docs: list[Doc], path: Path) -> Path | None:
    """Per-sample latency per precision at batch 1 and at the largest batch (torch models)."""
    rows = [
        (doc, r)
        for doc in _suite(docs, "model")
        for r in doc["results"]
        if r["precision"] != "n/a" and "per_sample_ms" in r
    ]
    if not rows:
        return None
    names = sorted({doc["name"] for doc, _ in rows})
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        mine = [r for doc, r in rows if doc["name"] == name]
        precisions = sorted({r["precision"] for r in mine})
        top = max(r["batch"] for r in mine)
        for offset, batch in ((-0.2, 1), (0.2, top)):
            values = []
            for p in precisions:
                match = [r for r in mine if r["precision"] == p and r["batch"] == batch]
                values.append(match[0]["per_sample_ms"]["median"] if match else 0.0)
            bars = ax.bar(
                [i + offset for i in range(len(precisions))],
                values,
                width=0.4,
                label=f"batch {batch}",
            )
            ax.bar_label(bars, fmt="%.1f", fontsize=7)
        ax.set_xticks(range(len(precisions)), precisions)
        ax.set(ylabel="ms per sample (median)", title=f"{name}: precision", yscale="log")
        _legend(ax)
        ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def coldstart_breakdown(docs: list[Doc], path: Path) -> Path | None:
    rows = [(doc, r) for doc in _suite(docs, "coldstart") for r in doc["results"]]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.7 * len(rows) + 1.8))
    parts = ("extract_s", "import_s", "load_s", "warmup_s", "other_s")
    labels = [f"{doc['name']} ({r['artifact']})" for doc, r in rows]
    left = [0.0] * len(rows)
    for part in parts:
        widths = [r.get(part, {}).get("median", 0.0) or 0.0 for _, r in rows]
        ax.barh(labels, widths, left=left, label=part.removesuffix("_s"))
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.axvline(targets.COLDSTART_MAX_S, color="red", ls="--", label="silhouette target 3 s")
    ax.set(xlabel="seconds from process start to first /ping 200 (median)", title="Cold start")
    _legend(ax, loc="lower right")
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


OVERLOAD_SERVERS = {
    "ours": ("ours", "o-"),
    "litserve": ("LitServe", "s--"),
    "byoc": ("BYOC", "D--"),
}


def overload_goodput(docs: list[Doc], path: Path) -> Path | None:
    """Goodput vs clients that retry every refusal at once, per server; /ping p99 there."""
    overload = _suite(docs, "overload")
    if not overload:
        return None
    fig, (ax, ping) = plt.subplots(1, 2, figsize=(12, 4.5))
    for doc in overload:
        for server, (label, style) in OVERLOAD_SERVERS.items():
            rows = [r for r in doc["results"] if server in r]
            if not rows:
                continue
            xs = [r["clients"] for r in rows]
            name = f"{doc['name']} {label}"
            ax.plot(xs, [r[server]["goodput_per_s"] for r in rows], style, label=name)
            ping.plot(
                xs, [r[server].get("ping_ms", {}).get("p99") for r in rows], style, label=name
            )
    ax.set(
        xlabel="clients (each retries a 503 at once)",
        ylabel="completed (200) requests / s",
        title="Goodput under overload",
        ylim=(0, None),
    )
    ping.axhline(targets.PING_P99_MAX_MS, color="red", ls="--", label="/ping target 50 ms")
    ping.set(
        xlabel="clients",
        ylabel="health check p99 (ms)",
        title="/ping p99 under overload (LitServe: /health)",
        yscale="log",
    )
    for axis in (ax, ping):
        axis.set_xscale("log", base=2)
        _plain_log_axis(axis)
        _legend(axis)
        axis.grid(alpha=0.3)
    return _save(fig, path)


def make_plots(docs: list[Doc], folder: Path, prefix: str) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    makers = {
        "throughput": throughput_vs_concurrency,
        "latency": latency_distribution,
        "batch_scaling": batch_scaling,
        "precision": precision_comparison,
        "coldstart": coldstart_breakdown,
        "overload": overload_goodput,
    }
    made = {}
    for key, maker in makers.items():
        out = maker(docs, folder / f"{prefix}_{key}.png")
        if out is not None:
            made[key] = out
    return made
