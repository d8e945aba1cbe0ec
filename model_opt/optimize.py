"""`gen3d optimize` for the proxy backend: transform `modules()`, write the artifact
(config.json, model.safetensors, compile cache, gen3d-manifest.json), and hand back the
in-process optimised backend (the tests compare the server's answers with it)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gen3d.model_opt.manifest import write_manifest
from gen3d.serve.artifact import compile_cache
from gen3d.serve.artifact.manifest import MANIFEST_FILE, sha256_file
from gen3d.serve.artifact.precision import OptimizeError, check_precision, min_capability
from gen3d.serve.artifact.quantize import check_variant, quantize_stage
from gen3d.serve.artifact.variant import Variant
from gen3d.serve.artifact.weights import OPTIMIZED_WEIGHTS_FILE, int8_storage_names, save_optimized
from gen3d.serve.backends.proxy.backend import ProxyBackend
from gen3d.serve.backends.proxy.model import build_model
from gen3d.serve.backends.proxy.weights import CONFIG_FILE, WEIGHTS_FILE, load_weights, read_config

Progress = Callable[[str], None]


@dataclass
class OptimizeResult:
    out_dir: Path
    variant: Variant
    manifest: dict[str, Any]
    backend: ProxyBackend  # the optimised model, in this process


def prepare_out_dir(out_dir: Path, in_dir: Path) -> None:
    """OUT must be new, empty, or a previous artifact (which is replaced)."""
    if out_dir.resolve() == in_dir.resolve():
        raise OptimizeError("--out must differ from --model-dir")
    if out_dir.exists():
        if not out_dir.is_dir():
            raise OptimizeError(f"{out_dir} exists and is not a directory")
        if any(out_dir.iterdir()) and not (out_dir / MANIFEST_FILE).is_file():
            raise OptimizeError(f"{out_dir} is not empty and holds no gen3d artifact")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)


def build_proxy_artifact(
    in_dir: Path,
    out_dir: Path,
    variant: Variant,
    device: torch.device,
    *,
    capability: tuple[int, int] | None = None,
    max_batch_size: int = 8,
    ship_compile_cache: bool = True,
    progress: Progress = lambda _: None,
) -> OptimizeResult:
    dtype = check_precision(variant.precision, device, capability)
    check_variant(variant, device)
    config, _ = read_config(in_dir)
    prepare_out_dir(out_dir, in_dir)
    progress(f"optimising proxy {config.size} -> {variant.label} on {device.type}")
    model = build_model(config, "meta")
    load_weights(model, in_dir / WEIGHTS_FILE, device, dtype)
    model.eval().requires_grad_(False)
    for stage in model.stages().values():
        quantize_stage(stage, variant)
    shutil.copy2(in_dir / CONFIG_FILE, out_dir / CONFIG_FILE)
    save_optimized(model, variant, out_dir / OPTIMIZED_WEIGHTS_FILE)
    backend = ProxyBackend()
    backend.config, backend.model = config, model
    backend.device, backend.dtype, backend.variant = device, dtype, variant.label
    backend.max_batch_size = max_batch_size
    if variant.compile:
        if ship_compile_cache:
            compile_cache.point_inductor_at(out_dir / compile_cache.CACHE_SUBDIR)
        compile_cache.compile_stages(model.stages().values())
        progress(f"compiling for batch sizes up to {max_batch_size} (minutes on a CPU)")
        backend.warmup()
        if ship_compile_cache:
            compile_cache.finish_cache(out_dir)
    applied = {
        "variant": variant.to_dict(),
        "label": variant.label,
        "weights": OPTIMIZED_WEIGHTS_FILE,
        "compile_options": compile_cache.COMPILE_OPTIONS if variant.compile else None,
        "compile_cache": (
            compile_cache.CACHE_SUBDIR if variant.compile and ship_compile_cache else None
        ),
        "compiled_for_max_batch_size": max_batch_size if variant.compile else None,
        "int8_stored_tensors": int8_storage_names(out_dir / OPTIMIZED_WEIGHTS_FILE),
        "source": {"model_dir": str(in_dir), WEIGHTS_FILE: sha256_file(in_dir / WEIGHTS_FILE)},
    }
    manifest = write_manifest(
        out_dir,
        "proxy",
        applied,
        extra={
            "device": device.type,
            "min_compute_capability": min_capability(variant.precision, device.type),
        },
    )
    progress(f"wrote {out_dir} ({len(manifest['files'])} files)")
    return OptimizeResult(out_dir=out_dir, variant=variant, manifest=manifest, backend=backend)
