"""model_opt's variants (INT8, compile cache), built with `gen3d optimize` when it exists.

fp32/fp16/bf16 need nothing from model_opt: GEN3D_PRECISION loads the weights in that
dtype. INT8 and compiled variants are artifacts written by `gen3d optimize` (weights +
gen3d-manifest.json, and inductor's cache); the backend loads them through the
manifest exactly as the server does. They are built once per (source, variant, torch
version) in a subprocess whose inductor cache is a throwaway directory, so no build
leaves kernels behind that would make a later "no cache" start look warm.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

MANIFEST = "gen3d-manifest.json"


def model_opt_available() -> bool:
    try:
        return importlib.util.find_spec("model_opt.optimize") is not None
    except ModuleNotFoundError:
        return False


def unavailable(precision: str, backend: str) -> str | None:
    """Why this precision cannot be measured here, or None when it can."""
    if precision != "int8":
        return None
    if backend != "proxy":
        return f"{backend}: int8 variants are built for the proxy backend only"
    if not model_opt_available():
        return "int8 needs model_opt (gen3d optimize --quantize), which is not in this tree"
    return None


def int8_args(device: str) -> tuple[list[str], str]:
    """`gen3d optimize` arguments for our INT8 variant on this device, and its precision.

    CPU: dynamic INT8 (PyTorch quantize_dynamic, fp32 activations). CUDA: torchao
    weight-only INT8 with fp16 activations (what fits a T4 / A10G's memory best)."""
    if device == "cuda":
        return [
            "--precision",
            "fp16",
            "--quantize",
            "int8-weight",
            "--int8-engine",
            "torchao",
        ], "fp16"
    return ["--precision", "fp32", "--quantize", "int8-dynamic", "--int8-engine", "pytorch"], "fp32"


def build_artifact(source: Path, name: str, args: list[str], device: str, cache_root: Path) -> Path:
    """`gen3d optimize --model-dir source --out <cache>/<name>-torch<v> ARGS --no-report`."""
    import torch

    out = cache_root / f"{source.name}-{name}-torch{torch.__version__}"
    if (out / MANIFEST).is_file():
        return out
    print(f"building {name} variant with gen3d optimize -> {out} (once; reused after)", flush=True)
    with tempfile.TemporaryDirectory(prefix="gen3d-bench-inductor-") as scratch:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": scratch}
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "scripts.cli",
                "optimize",
                "--model-dir",
                str(source),
                "--out",
                str(out),
                "--device",
                device,
                "--no-report",
                *args,
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).resolve().parents[1],
        )
    if proc.returncode != 0:
        raise RuntimeError(f"gen3d optimize failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
    return out
