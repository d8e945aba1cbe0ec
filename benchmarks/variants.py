"""model_opt's variants (int8 quantization, compile cache) when model_opt is in the tree.

Precisions fp32/fp16/bf16 need nothing from model_opt: GEN3D_PRECISION's setting loads
the weights in that dtype. int8 exists only through model_opt; without it the suites
record the configuration as skipped, with this module's reason.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from serve.backends import Backend


def model_opt_available() -> bool:
    try:
        return importlib.util.find_spec("model_opt.quantize") is not None
    except ModuleNotFoundError:
        return False


def unavailable(precision: str, backend: str) -> str | None:
    """Why this precision cannot be measured here, or None when it can."""
    if precision != "int8":
        return None
    if backend == "silhouette":
        return "silhouette has no network to quantize"
    if not model_opt_available():
        return "int8 needs model_opt (gen3d optimize --quantize), which is not in this tree"
    return None


def apply(backend: Backend, precision: str, device: str) -> dict[str, Any] | None:
    """Transform a loaded backend into the requested variant; returns its description."""
    if precision != "int8":
        return None
    from model_opt import quantize  # type: ignore[import-not-found]

    return quantize.apply_to_backend(backend, "int8-weight", device)  # pragma: no cover
