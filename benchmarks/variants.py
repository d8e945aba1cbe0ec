"""model_opt's INT8 variants for the benchmarks, built with gen3d.model_opt.optimize.

fp32/fp16/bf16 need nothing from model_opt: GEN3D_PRECISION loads the weights in that
dtype. INT8 variants are artifacts (weights + gen3d-manifest.json) that the backend loads
through the manifest exactly as the server does; they are built once per (source,
variant, torch version) and reused. They are never compiled, so building them in this
process leaves no inductor kernels behind that could make a later cold start look warm.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from pathlib import Path

from gen3d.serve.artifact.variant import Variant

MANIFEST = "gen3d-manifest.json"


def unavailable(precision: str, backend: str) -> str | None:
    """Why this precision cannot be measured here, or None when it can."""
    if precision != "int8":
        return None
    if backend != "proxy":
        return f"{backend}: int8 variants are built for the proxy backend only"
    return None


def int8_variant(device: str) -> tuple[Variant, str]:
    """Our INT8 variant on this device, and the precision it computes in.

    CPU: dynamic INT8 (PyTorch quantize_dynamic, fp32 activations). CUDA: torchao
    weight-only INT8 with fp16 activations (what fits a T4 / A10G's memory best)."""
    if device == "cuda":
        return Variant("fp16", "int8-weight", "torchao", False), "fp16"
    return Variant("fp32", "int8-dynamic", "pytorch", False), "fp32"


def build_artifact(
    source: Path,
    name: str,
    variant: Variant,
    device: str,
    cache_root: Path,
    max_batch_size: int = 8,
    ship_compile_cache: bool = True,
) -> Path:
    """The `variant` artifact of `source` under `cache_root`, built once and then reused.

    It is built in a fresh (spawned) process whose inductor cache is a throwaway
    directory, so no build leaves compiled kernels behind that would make a later
    "no cache" cold start look warm."""
    import torch

    out = cache_root / f"{source.name}-{name}-torch{torch.__version__}"
    if (out / MANIFEST).is_file():
        return out
    print(f"building {name} variant with gen3d.model_opt -> {out} (once; reused after)", flush=True)
    with tempfile.TemporaryDirectory(prefix="gen3d-bench-inductor-") as scratch:
        job = (source, out, variant, device, scratch, max_batch_size, ship_compile_cache)
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            pool.apply(_build_in_fresh_process, job)
    return out


def _build_in_fresh_process(
    source: Path,
    out: Path,
    variant: Variant,
    device: str,
    inductor_dir: str,
    max_batch_size: int,
    ship_compile_cache: bool,
) -> None:
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = inductor_dir  # before inductor reads its config
    import torch

    from gen3d.model_opt.optimize import build_proxy_artifact

    build_proxy_artifact(
        source,
        out,
        variant,
        torch.device(device),
        max_batch_size=max_batch_size,
        ship_compile_cache=ship_compile_cache,
    )
