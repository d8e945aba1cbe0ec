"""Precision policy for optimisation: fp32 / fp16 / bf16, checked against the device's
compute capability (bf16 needs 8.0; a T4 is 7.5)."""

from __future__ import annotations

import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PRECISIONS = tuple(DTYPES)
BF16_MIN_CAPABILITY = (8, 0)
FP16_MIN_CAPABILITY = (7, 0)


class OptimizeError(ValueError):
    """A requested optimisation cannot be applied here; the message says what to use."""


def device_capability(device: torch.device) -> tuple[int, int] | None:
    if device.type != "cuda":
        return None
    return tuple(torch.cuda.get_device_capability(device))  # type: ignore[return-value]


def check_precision(
    precision: str, device: torch.device, capability: tuple[int, int] | None = None
) -> torch.dtype:
    """The dtype for `precision` on `device`. `capability` overrides the device's
    (tests inject a T4's 7.5). `torch.cuda.is_bf16_supported()` also counts emulation,
    so the capability is what is checked."""
    if precision not in DTYPES:
        raise OptimizeError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if capability is None:
        capability = device_capability(device)
    if precision == "bf16" and capability is not None and capability < BF16_MIN_CAPABILITY:
        raise OptimizeError(
            f"bf16 needs compute capability 8.0 or newer; this GPU is "
            f"{capability[0]}.{capability[1]} (a T4 is 7.5): use --precision fp16"
        )
    return DTYPES[precision]


def min_capability(precision: str, device_type: str) -> list[int] | None:
    """The lowest CUDA compute capability the artifact's kernels need (None: CPU)."""
    if device_type != "cuda":
        return None
    if precision == "bf16":
        return list(BF16_MIN_CAPABILITY)
    if precision == "fp16":
        return list(FP16_MIN_CAPABILITY)
    return None
