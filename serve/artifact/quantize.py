"""INT8 for the stages' nn.Linear layers, two ways:

- torchao (0.18) `quantize_` with `Int8WeightOnlyConfig` (int8 weights, activations in
  the model dtype) or `Int8DynamicActivationInt8WeightConfig` (activations quantized per
  token at run time). Works on CPU and CUDA, in any float dtype.
- PyTorch's `torch.ao.quantization.quantize_dynamic` (deprecated, CPU only, fp32
  activations; fbgemm/x86 kernels that are much faster than torchao's eager int8 path on
  CPUs with VNNI/AVX-512).

Which one is faster is measured per device (gen3d.model_opt.optimize), not assumed.

Every other floating tensor with ndim >= 2 that neither engine quantized (convs, the
patch embedding, positional embeddings, class token) gets INT8 *storage*: int8 values
with a symmetric float32 scale per channel (absmax / 127), dequantized to the compute
dtype before the model runs. Those modules still compute in float. The in-memory model
is given the same dequantized values at optimise time, so what is measured is what is
served. Norms and biases (1-D) stay in the model dtype.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from gen3d.serve.artifact.precision import OptimizeError
from gen3d.serve.artifact.variant import Variant


def check_variant(variant: Variant, device: torch.device) -> None:
    if variant.engine == "pytorch":
        if device.type != "cpu":
            raise OptimizeError(
                "PyTorch's quantize_dynamic runs on the CPU only; use --int8-engine torchao on CUDA"
            )
        if variant.precision != "fp32":
            raise OptimizeError(
                "PyTorch's quantize_dynamic takes fp32 activations; use --precision fp32 "
                "or --int8-engine torchao"
            )


def torchao_config(quantize: str) -> object:
    from torchao.quantization import (
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
    )

    if quantize == "int8-weight":
        return Int8WeightOnlyConfig()
    if quantize == "int8-dynamic":
        return Int8DynamicActivationInt8WeightConfig()
    raise ValueError(f"no torchao config for {quantize!r}")


def quantize_stage(module: nn.Module, variant: Variant) -> nn.Module:
    """Quantize `module`'s Linear layers in place (the module keeps its identity), then
    give every other float tensor with ndim >= 2 INT8 storage (`quantize_storage`)."""
    if variant.quantize == "none":
        return module
    if variant.engine == "torchao":
        from torchao.quantization import quantize_

        quantize_(module, torchao_config(variant.quantize))
    else:
        with warnings.catch_warnings():  # quantize_dynamic is deprecated; we measured it
            warnings.simplefilter("ignore")
            torch.ao.quantization.quantize_dynamic(
                module, set(linear_names(module)), dtype=torch.qint8, inplace=True
            )
    quantize_storage(module)
    return module


def linear_names(module: nn.Module) -> list[str]:
    return [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]


DynamicLinear = torch.ao.nn.quantized.dynamic.Linear


def pytorch_int8_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """A quantize_dynamic model as plain tensors (int8 weights, scale, zero point, bias)
    plus every other parameter and buffer: what safetensors can store."""
    tensors: dict[str, torch.Tensor] = {}
    quantized = set()
    for name, module in model.named_modules():
        if isinstance(module, DynamicLinear):
            quantized.add(name)
            weight, bias = module._weight_bias()
            if weight.qscheme() != torch.per_tensor_affine:
                raise OptimizeError(f"{name}: unsupported qscheme {weight.qscheme()}")
            tensors[f"{name}.weight_int8"] = weight.int_repr().contiguous()
            tensors[f"{name}.weight_scale"] = torch.tensor([weight.q_scale()], dtype=torch.float64)
            tensors[f"{name}.weight_zero_point"] = torch.tensor(
                [weight.q_zero_point()], dtype=torch.int64
            )
            if bias is not None:
                tensors[f"{name}.bias"] = bias.detach().contiguous()
    for key, value in model.state_dict().items():
        if owned_by(key, quantized):
            continue
        tensors[key] = value.detach().contiguous()
    return tensors


def owned_by(key: str, names: set[str]) -> bool:
    owner = key.rsplit(".", 1)[0]
    return any(owner == n or owner.startswith(n + ".") for n in names)


def restore_pytorch_int8(
    model: nn.Module, tensors: dict[str, torch.Tensor], quantized: list[str]
) -> None:
    """Swap each listed Linear of `model` (any device, meta included) for a dynamic int8
    Linear rebuilt bit-exactly from its stored int8 weight, scale and zero point."""
    modules = dict(model.named_modules())
    for name in quantized:
        linear = modules.get(name)
        if not isinstance(linear, nn.Linear):
            raise OptimizeError(f"{name} is not a Linear layer of this model")
        int8 = tensors[f"{name}.weight_int8"]
        scale = float(tensors[f"{name}.weight_scale"][0])
        zero_point = int(tensors[f"{name}.weight_zero_point"][0])
        bias = tensors.get(f"{name}.bias")
        with warnings.catch_warnings():  # the qint8 tensor API is deprecated too
            warnings.simplefilter("ignore")
            qweight = torch._make_per_tensor_quantized_tensor(int8, scale, zero_point)
        replacement = DynamicLinear(
            linear.in_features, linear.out_features, bias_=bias is not None, dtype=torch.qint8
        )
        replacement.set_weight_bias(qweight, None if bias is None else bias.float())
        parent_name, _, attr = name.rpartition(".")
        parent = modules[parent_name] if parent_name else model
        setattr(parent, attr, replacement)


# --- INT8 storage for the float tensors the Linear quantizers leave alone ------------

INT8_STORAGE_ATTR = "gen3d_int8_storage"  # on each quantized stage: {name: Int8Stored}


@dataclass(frozen=True)
class Int8Stored:
    data: torch.Tensor  # int8, the tensor's shape
    scale: torch.Tensor  # float32, the tensor's shape with 1 on every dim but the channel's


def channel_axis(shape: tuple[int, ...] | torch.Size) -> int:
    """The first dimension longer than 1: dim 0 (output channels) of a conv weight, the
    token axis of a (1, N, D) positional embedding (one scale per token, not per tensor)."""
    return next((i for i, n in enumerate(shape) if n > 1), 0)


def storage_quantize(tensor: torch.Tensor) -> Int8Stored:
    """Symmetric per-channel int8: scale = absmax / 127 (1 for an all-zero channel)."""
    w = tensor.detach().float()
    axis = channel_axis(w.shape)
    absmax = w.abs().amax(dim=[d for d in range(w.ndim) if d != axis], keepdim=True)
    if not torch.isfinite(absmax).all():
        raise OptimizeError("cannot store a tensor holding inf or nan as int8")
    scale = torch.where(absmax > 0, absmax / 127.0, torch.ones_like(absmax))
    data = torch.round(w / scale).clamp_(-127, 127).to(torch.int8)
    return Int8Stored(data=data, scale=scale)


def storage_dequantize(stored: Int8Stored, dtype: torch.dtype) -> torch.Tensor:
    """int8 * scale in fp32, then cast: the same ops at optimise time and at load, so the
    served weights equal the in-process ones bit for bit."""
    return (stored.data.float() * stored.scale).to(dtype)


def storage_candidates(module: nn.Module) -> dict[str, torch.Tensor]:
    """`module`'s float state-dict tensors with ndim >= 2 that no engine quantized.
    torchao's quantized weights are tensor subclasses, and quantize_dynamic's live in
    packed params, so only plain tensors qualify."""
    found = {}
    for name, value in module.state_dict(keep_vars=True).items():
        if not isinstance(value, torch.Tensor):
            continue
        plain = value.detach()
        if type(plain) is torch.Tensor and plain.is_floating_point() and plain.ndim >= 2:
            found[name] = value
    return found


def quantize_storage(module: nn.Module) -> dict[str, Int8Stored]:
    """Give `module`'s remaining float matrices INT8 storage: overwrite each in place with
    its dequantized values (the modules keep computing in their dtype) and keep the int8
    data and scales on the module for `gen3d.serve.artifact.weights` to save."""
    stored = {}
    for name, tensor in storage_candidates(module).items():
        stored[name] = storage_quantize(tensor)
        with torch.no_grad():
            tensor.copy_(storage_dequantize(stored[name], tensor.dtype))
    setattr(module, INT8_STORAGE_ATTR, stored)
    return stored


def int8_storage_of(model: nn.Module) -> dict[str, Int8Stored]:
    """Every INT8-stored tensor under `model`, by its state-dict name."""
    found = {}
    for prefix, module in model.named_modules():
        for name, stored in getattr(module, INT8_STORAGE_ATTR, {}).items():
            found[f"{prefix}.{name}" if prefix else name] = stored
    return found


def check_int8_storage(model: nn.Module, stored: dict[str, Int8Stored]) -> None:
    """Every candidate is INT8-stored and still holds exactly its dequantized values
    (else the artifact would serve something other than what was measured)."""
    candidates = storage_candidates(model)
    if set(candidates) != set(stored):
        left = sorted(set(candidates) - set(stored))
        raise OptimizeError(f"tensors left in float by the INT8 storage pass: {left[:3]}")
    for name, tensor in candidates.items():
        if not torch.equal(tensor.detach(), storage_dequantize(stored[name], tensor.dtype)):
            raise OptimizeError(f"{name} changed after INT8 storage quantization")
