"""Per-variant report: weight bytes, peak memory, latency at batch 1 and max batch, and
drift against fp32 on the same inputs (raw occupancy logits and mesh geometry), as JSON
and markdown. Each variant is measured in its own process (gen3d.model_opt.measure)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from gen3d.model_opt.memory_plan import safetensors_tensor_bytes
from gen3d.model_opt.metrics import chamfer_distance, volume_iou

# A variant is acceptable when its meshes stay this close to fp32's (unit-extent meshes;
# a tiny proxy grid cell is 1/24 = 0.042, a full one 1/64 = 0.016).
MAX_CHAMFER = 0.01
MIN_VOLUME_IOU = 0.95


def run_measurement(
    model_dir: Path, device: str, max_batch_size: int, runs: int, env: dict[str, str] | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    with tempfile.TemporaryDirectory(prefix="gen3d-measure-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "gen3d.model_opt.measure",
            "--model-dir",
            str(model_dir),
            "--device",
            device,
            "--max-batch-size",
            str(max_batch_size),
            "--runs",
            str(runs),
            "--out",
            tmp,
        ]
        full_env = {**os.environ, **(env or {})}
        proc = subprocess.run(cmd, env=full_env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"measuring {model_dir} failed:\n{proc.stderr[-3000:]}")
        result = json.loads((Path(tmp) / "result.json").read_text())
        with np.load(Path(tmp) / "outputs.npz") as data:
            outputs = {k: data[k] for k in data.files}
    return result, outputs


def drift(reference: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> dict[str, float]:
    diff = np.abs(outputs["logits"].astype(np.float64) - reference["logits"])
    chamfers, ious = [], []
    count = len(reference["logits"])
    for i in range(count):
        a = (reference[f"vertices_{i}"], reference[f"faces_{i}"])
        b = (outputs[f"vertices_{i}"], outputs[f"faces_{i}"])
        if all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)):
            chamfers.append(0.0)  # the same mesh (fp32 itself, or a lossless variant)
            ious.append(1.0)
            continue
        chamfers.append(chamfer_distance(a, b))
        ious.append(volume_iou(a, b))
    return {
        "samples": count,
        "logits_max_abs_err": float(diff.max()),
        "logits_mean_abs_err": float(diff.mean()),
        "chamfer_mean": float(np.mean(chamfers)),
        "chamfer_max": float(np.max(chamfers)),
        "volume_iou_mean": float(np.mean(ious)),
        "volume_iou_min": float(np.min(ious)),
    }


def weights_file(model_dir: Path) -> Path:
    from gen3d.serve.artifact.manifest import read_manifest

    manifest = read_manifest(model_dir)
    # an optimised artifact names its weights file; an initialised proxy model has the plain one
    weights = (manifest or {}).get("applied", {}).get("weights", "proxy.safetensors")
    return model_dir / weights


def weight_bytes(model_dir: Path) -> int:
    """Bytes of tensor data in the model's weights file (from its safetensors header)."""
    return sum(safetensors_tensor_bytes(weights_file(model_dir)).values())


def int8_stored_tensors(model_dir: Path) -> list[str]:
    """Float tensors the artifact stores as per-channel int8 (gen3d.serve.artifact.quantize)."""
    from gen3d.serve.artifact.weights import int8_storage_names

    return int8_storage_names(weights_file(model_dir))


def measure_variants(
    reference_dir: Path,
    variants: dict[str, Path],
    device: str,
    max_batch_size: int,
    runs: int,
    progress: Any = lambda _: None,
) -> dict[str, Any]:
    """Rows for the fp32 reference and each labelled artifact dir, plus the pick."""
    progress(f"measuring fp32 reference ({runs} runs per batch size)")
    ref_result, ref_outputs = run_measurement(reference_dir, device, max_batch_size, runs)
    ref_bytes = weight_bytes(reference_dir)
    rows = [
        {
            "label": "fp32",
            "model_dir": str(reference_dir),
            **ref_result,
            "weight_bytes": ref_bytes,
            "weight_ratio_vs_fp32": 1.0,
            "int8_stored_tensors": int8_stored_tensors(reference_dir),
            "drift_vs_fp32": drift(ref_outputs, ref_outputs),
        }
    ]
    for label, model_dir in variants.items():
        progress(f"measuring {label}")
        result, outputs = run_measurement(model_dir, device, max_batch_size, runs)
        nbytes = weight_bytes(model_dir)
        rows.append(
            {
                "label": label,
                "model_dir": str(model_dir),
                **result,
                "weight_bytes": nbytes,
                "weight_ratio_vs_fp32": nbytes / ref_bytes,
                "int8_stored_tensors": int8_stored_tensors(model_dir),
                "drift_vs_fp32": drift(ref_outputs, outputs),
            }
        )
    return {
        "device": device,
        "device_name": ref_result["device_name"],
        "max_batch_size": max_batch_size,
        "runs": runs,
        "limits": {"max_chamfer": MAX_CHAMFER, "min_volume_iou": MIN_VOLUME_IOU},
        "rows": rows,
        "recommendation": recommend(rows),
    }


def acceptable(row: dict[str, Any]) -> bool:
    d = row["drift_vs_fp32"]
    return d["chamfer_max"] <= MAX_CHAMFER and d["volume_iou_min"] >= MIN_VOLUME_IOU


def recommend(rows: list[dict[str, Any]], among: list[str] | None = None) -> dict[str, Any]:
    """Fastest per sample at max batch among variants (all, or the labels in `among`)
    whose drift is within limits; if none is, the one with the least Chamfer."""
    pool = [r for r in rows if among is None or r["label"] in among]
    ok = [r for r in pool if acceptable(r)]
    if not ok:
        best = min(pool, key=lambda r: r["drift_vs_fp32"]["chamfer_max"])
        return {
            "label": best["label"],
            "why": "no variant is within the drift limits; this one drifts least",
            "rejected_for_drift": [r["label"] for r in pool],
        }
    best = min(ok, key=lambda r: r["latency_ms_per_sample_batch_max"])
    return {
        "label": best["label"],
        "why": (
            f"lowest latency per sample at batch {best['max_batch_size']} "
            f"({best['latency_ms_per_sample_batch_max']:.1f} ms) among variants with Chamfer "
            f"<= {MAX_CHAMFER} and volume IoU >= {MIN_VOLUME_IOU} vs fp32"
        ),
        "rejected_for_drift": [r["label"] for r in pool if not acceptable(r)],
    }


def to_markdown(report: dict[str, Any]) -> str:
    mb = report["max_batch_size"]
    lines = [
        f"# Model optimisation report ({report['device']}: {report['device_name']})",
        "",
        f"Median of {report['runs']} runs per batch size, each variant in a fresh process. "
        "Drift: same inputs and seeds as fp32; Chamfer on unit-extent meshes.",
        *([f"Statistic: {report['statistic']}.", ""] if "statistic" in report else [""]),
        f"| variant | weight bytes | vs fp32 | peak memory | ms/sample b=1 | ms/sample b={mb} "
        "| logits max / mean abs err | Chamfer mean / max | volume IoU mean / min |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        d = r["drift_vs_fp32"]
        lines.append(
            f"| {r['label']} | {r['weight_bytes']:,} | {r['weight_ratio_vs_fp32']:.3f} "
            f"| {r['peak_memory_bytes'] / 2**20:,.0f} MiB ({r['peak_memory_kind']}) "
            f"| {r['latency_ms_per_sample_batch1']:.1f} "
            f"| {r['latency_ms_per_sample_batch_max']:.1f} "
            f"| {d['logits_max_abs_err']:.3g} / {d['logits_mean_abs_err']:.3g} "
            f"| {d['chamfer_mean']:.4f} / {d['chamfer_max']:.4f} "
            f"| {d['volume_iou_mean']:.3f} / {d['volume_iou_min']:.3f} |"
        )
    stored = {name for r in report["rows"] for name in r.get("int8_stored_tensors", [])}
    if stored:
        lines += [
            "",
            "INT8 variants also store these non-Linear tensors as per-channel int8 "
            f"(dequantized at load; drift above includes them): {', '.join(sorted(stored))}.",
        ]
    rec = report["recommendation"]
    lines += ["", f"Recommendation: **{rec['label']}**: {rec['why']}."]
    if rec["rejected_for_drift"]:
        lines.append(f"Rejected for drift: {', '.join(rec['rejected_for_drift'])}.")
    if "cold_start" in report:
        lines += [
            "",
            "Cold start to /ping 200 (real server, median seconds): "
            + ", ".join(f"{k} {v['median_s']:.1f} s" for k, v in report["cold_start"].items()),
        ]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], json_path: Path, md_path: Path) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    md_path.write_text(to_markdown(report))
