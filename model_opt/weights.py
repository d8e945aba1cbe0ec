"""Optimised weights as one safetensors file (never pickle), for every variant:

- none: the state dict in the variant's dtype;
- torchao int8: torchao's own safetensors flattening (`qdata`/`scale` tensors plus JSON
  metadata per Int8Tensor), rebuilt with its JSON decoder;
- pytorch int8: int8 weight, scale and zero point per Linear (model_opt.quantize).

Loading rebuilds bit-identical modules on a model built on the meta device.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from model_opt.quantize import (
    DynamicLinear,
    owned_by,
    pytorch_int8_tensors,
    restore_pytorch_int8,
)
from model_opt.variant import Variant
from serve.errors import ArtifactError

OPTIMIZED_WEIGHTS_FILE = "model.safetensors"
VARIANT_KEY = "gen3d_variant"
QUANTIZED_KEY = "gen3d_pytorch_int8_modules"


def save_optimized(model: nn.Module, variant: Variant, path: Path) -> int:
    """Write `model`'s weights for `variant`; returns the bytes of tensor data written."""
    from safetensors.torch import save_file

    metadata = {"format": "pt", VARIANT_KEY: json.dumps(variant.to_dict(), sort_keys=True)}
    if variant.quantize != "none" and variant.engine == "torchao":
        from torchao.prototype.safetensors.safetensors_support import flatten_tensor_state_dict

        tensors, torchao_metadata = flatten_tensor_state_dict(model.state_dict())
        metadata.update(torchao_metadata)
    elif variant.quantize != "none":
        tensors = pytorch_int8_tensors(model)
        quantized = [n for n, m in model.named_modules() if isinstance(m, DynamicLinear)]
        metadata[QUANTIZED_KEY] = json.dumps(quantized)
    else:
        tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    tensors = {k: v.cpu() for k, v in tensors.items()}
    save_file(tensors, str(path), metadata=metadata)
    return sum(t.numel() * t.element_size() for t in tensors.values())


def load_optimized(
    model: nn.Module, path: Path, variant: Variant, device: torch.device, dtype: torch.dtype
) -> nn.Module:
    """Fill `model` (built on "meta") from `path` as `variant`, on `device`."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(f"{path}: unreadable safetensors ({exc})") from None
    stored = metadata.get(VARIANT_KEY)
    if stored is None or Variant.from_dict(json.loads(stored)) != variant:
        raise ArtifactError(f"{path}: weights were written for {stored}, manifest says {variant}")
    try:
        if variant.quantize != "none" and variant.engine == "torchao":
            from torchao.prototype.safetensors.safetensors_support import (
                unflatten_tensor_state_dict,
            )

            on_device = {k: v.to(device) for k, v in tensors.items()}
            state, leftover = unflatten_tensor_state_dict(on_device, metadata)
            if leftover:
                raise ArtifactError(f"{path}: unexpected tensors {sorted(leftover)[:3]}")
            model.load_state_dict(state, strict=True, assign=True)
        elif variant.quantize != "none":
            quantized = json.loads(metadata[QUANTIZED_KEY])
            names = set(quantized)
            rest = {k: v for k, v in tensors.items() if not owned_by(k, names)}
            result = model.load_state_dict(rest, strict=False, assign=True)
            missing = [k for k in result.missing_keys if not owned_by(k, names)]
            if missing or result.unexpected_keys:
                raise ArtifactError(
                    f"{path} does not match the model: missing {missing[:3]}, "
                    f"unexpected {result.unexpected_keys[:3]}"
                )
            restore_pytorch_int8(model, tensors, quantized)
        else:
            state = {
                k: v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device)
                for k, v in tensors.items()
            }
            model.load_state_dict(state, strict=True, assign=True)
    except (KeyError, ValueError, RuntimeError) as exc:
        if isinstance(exc, ArtifactError):
            raise
        raise ArtifactError(f"{path} does not match the model ({exc})") from None
    leftover_meta = [n for n, p in model.named_parameters() if p.device.type == "meta"]
    if leftover_meta:
        raise ArtifactError(f"{path}: no weights for {leftover_meta[:3]}")
    return model
