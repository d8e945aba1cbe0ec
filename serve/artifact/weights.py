"""Optimised weights as one safetensors file (never pickle), for every variant:

- none: the state dict in the variant's dtype;
- torchao int8: torchao's own safetensors flattening (`qdata`/`scale` tensors plus JSON
  metadata per Int8Tensor), rebuilt with its JSON decoder;
- pytorch int8: int8 weight, scale and zero point per Linear (gen3d.serve.artifact.quantize);
- both int8 engines: every other float tensor with ndim >= 2 as `NAME:int8` (int8) and
  `NAME:int8_scale` (float32 per channel), listed under `gen3d_int8_storage` in the
  metadata and dequantized to the compute dtype at load.

Loading rebuilds bit-identical modules on a model built on the meta device.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from gen3d.serve.artifact.quantize import (
    DynamicLinear,
    Int8Stored,
    check_int8_storage,
    int8_storage_of,
    owned_by,
    pytorch_int8_tensors,
    restore_pytorch_int8,
    storage_dequantize,
)
from gen3d.serve.artifact.variant import Variant
from gen3d.serve.errors import ArtifactError

OPTIMIZED_WEIGHTS_FILE = "model.safetensors"
VARIANT_KEY = "gen3d_variant"
QUANTIZED_KEY = "gen3d_pytorch_int8_modules"
INT8_STORAGE_KEY = "gen3d_int8_storage"
INT8_DATA_SUFFIX = ":int8"
INT8_SCALE_SUFFIX = ":int8_scale"


def save_optimized(model: nn.Module, variant: Variant, path: Path) -> int:
    """Write `model`'s weights for `variant`; returns the bytes of tensor data written."""
    from safetensors.torch import save_file

    metadata = {"format": "pt", VARIANT_KEY: json.dumps(variant.to_dict(), sort_keys=True)}
    stored: dict[str, Int8Stored] = {}
    if variant.quantize != "none":
        stored = int8_storage_of(model)
        check_int8_storage(model, stored)
        metadata[INT8_STORAGE_KEY] = json.dumps(sorted(stored))
    if variant.quantize != "none" and variant.engine == "torchao":
        from torchao.prototype.safetensors.safetensors_support import flatten_tensor_state_dict

        state = {k: v for k, v in model.state_dict().items() if k not in stored}
        tensors, torchao_metadata = flatten_tensor_state_dict(state)
        metadata.update(torchao_metadata)
    elif variant.quantize != "none":
        tensors = {k: v for k, v in pytorch_int8_tensors(model).items() if k not in stored}
        quantized = [n for n, m in model.named_modules() if isinstance(m, DynamicLinear)]
        metadata[QUANTIZED_KEY] = json.dumps(quantized)
    else:
        tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    for name, int8 in stored.items():
        tensors[name + INT8_DATA_SUFFIX] = int8.data.contiguous()
        tensors[name + INT8_SCALE_SUFFIX] = int8.scale.contiguous()
    tensors = {k: v.cpu() for k, v in tensors.items()}
    save_file(tensors, str(path), metadata=metadata)
    return sum(t.numel() * t.element_size() for t in tensors.values())


def int8_storage_names(path: Path) -> list[str]:
    """The tensors `path` stores as per-channel int8 (from its metadata, no data read)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        return json.loads((f.metadata() or {}).get(INT8_STORAGE_KEY, "[]"))


def pop_int8_storage(
    tensors: dict[str, torch.Tensor],
    names: list[str],
    device: torch.device,
    dtype: torch.dtype,
    path: Path,
) -> dict[str, torch.Tensor]:
    """Remove the listed INT8-stored tensors from `tensors`, dequantized to `dtype`."""
    out = {}
    for name in names:
        data = tensors.pop(name + INT8_DATA_SUFFIX)
        scale = tensors.pop(name + INT8_SCALE_SUFFIX)
        if data.dtype != torch.int8 or scale.dtype != torch.float32 or scale.ndim != data.ndim:
            raise ArtifactError(f"{path}: {name} is not int8 data with float32 scales")
        stored = Int8Stored(data=data.to(device), scale=scale.to(device))
        out[name] = storage_dequantize(stored, dtype)
    return out


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
        int8_stored = json.loads(metadata.get(INT8_STORAGE_KEY, "[]"))
        if int8_stored and variant.quantize == "none":
            raise ArtifactError(f"{path}: INT8-stored tensors in a variant without INT8")
        dequantized = pop_int8_storage(tensors, int8_stored, device, dtype, path)
        if variant.quantize != "none" and variant.engine == "torchao":
            from torchao.prototype.safetensors.safetensors_support import (
                unflatten_tensor_state_dict,
            )

            on_device = {k: v.to(device) for k, v in tensors.items()}
            state, leftover = unflatten_tensor_state_dict(on_device, metadata)
            if leftover:
                raise ArtifactError(f"{path}: unexpected tensors {sorted(leftover)[:3]}")
            model.load_state_dict({**state, **dequantized}, strict=True, assign=True)
        elif variant.quantize != "none":
            quantized = json.loads(metadata[QUANTIZED_KEY])
            names = set(quantized)
            rest = {k: v for k, v in tensors.items() if not owned_by(k, names)}
            rest.update(dequantized)
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
