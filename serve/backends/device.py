"""Device and precision policy for the torch backends (GEN3D_DEVICE, GEN3D_PRECISION)."""

from __future__ import annotations

import torch

from gen3d.serve.artifact.precision import DTYPES
from gen3d.serve.settings import SettingsError


def resolve_device(requested: str) -> torch.device:
    """ "auto" -> cuda when a CUDA device is visible, else cpu."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise SettingsError("GEN3D_DEVICE='cuda': no CUDA device is visible to this process")
    return torch.device(requested)


def resolve_dtype(requested: str, device: torch.device) -> torch.dtype:
    """ "auto" -> fp16 on CUDA compute capability >= 7.0, else fp32. bf16 needs >= 8.0."""
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    if requested == "auto":
        return torch.float16 if capability and capability >= (7, 0) else torch.float32
    if requested == "bf16" and capability and capability < (8, 0):
        raise SettingsError(
            f"GEN3D_PRECISION='bf16': this GPU (compute capability {capability[0]}."
            f"{capability[1]}) has no bf16 support; use fp16"
        )
    try:
        return DTYPES[requested]
    except KeyError:
        raise SettingsError(f"GEN3D_PRECISION={requested!r}: use fp32, fp16 or bf16") from None


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in DTYPES.items()}[dtype]
