"""Load an optimised `proxy` artifact exactly as `gen3d optimize` left it: verify the
manifest, rebuild the variant's weights, restore the compile cache, compile."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from gen3d.serve.artifact import compile_cache
from gen3d.serve.artifact.precision import OptimizeError, check_precision
from gen3d.serve.artifact.quantize import check_variant
from gen3d.serve.artifact.variant import Variant
from gen3d.serve.artifact.weights import load_optimized
from gen3d.serve.backends.proxy.model import ProxyConfig, ProxyModel, build_model
from gen3d.serve.errors import ArtifactError

log = logging.getLogger("gen3d.model_opt")


def variant_of(manifest: dict[str, Any]) -> Variant:
    try:
        return Variant.from_dict(manifest["applied"]["variant"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"manifest has no valid 'applied.variant' ({exc})") from None


def load_proxy_artifact(
    model_dir: Path,
    manifest: dict[str, Any],
    config: ProxyConfig,
    device: torch.device,
    requested_precision: str,
) -> tuple[ProxyModel, Variant, torch.dtype]:
    """(model, variant, dtype) for a verified manifest. The manifest decides the
    precision; an explicit GEN3D_PRECISION that disagrees is refused, not overridden."""
    variant = variant_of(manifest)
    if requested_precision not in ("auto", variant.precision):
        raise ArtifactError(
            f"GEN3D_PRECISION={requested_precision} but {model_dir} was optimised for "
            f"{variant.precision}; unset GEN3D_PRECISION or re-run gen3d optimize"
        )
    built_for = manifest.get("device")
    if variant.engine == "pytorch" and device.type != "cpu":
        raise ArtifactError(
            f"{model_dir} holds PyTorch dynamic INT8 (CPU only) but the server runs on "
            f"{device.type}; optimise for cuda with --int8-engine torchao"
        )
    try:
        dtype = check_precision(variant.precision, device)
        check_variant(variant, device)
    except OptimizeError as exc:
        raise ArtifactError(f"{model_dir}: {exc}") from None
    if built_for and built_for != device.type:
        log.warning("artifact was optimised on %s, loading on %s", built_for, device.type)
    weights = manifest["applied"].get("weights")
    if not isinstance(weights, str) or weights not in manifest["files"]:
        raise ArtifactError(f"{model_dir}: manifest's weights file is not among its files")
    model = build_model(config, "meta")
    load_optimized(model, model_dir / weights, variant, device, dtype)
    model.eval().requires_grad_(False)
    if variant.compile:
        compile_cache.restore_cache(model_dir, manifest)
        options = manifest["applied"].get("compile_options") or {}
        compile_cache.compile_stages(model.stages().values(), options)
    return model, variant, dtype
