"""INT8 for the stages' nn.Linear layers, two ways:

- torchao (0.18) `quantize_` with `Int8WeightOnlyConfig` (int8 weights, activations in
  the model dtype) or `Int8DynamicActivationInt8WeightConfig` (activations quantized per
  token at run time). Works on CPU and CUDA, in any float dtype.
- PyTorch's `torch.ao.quantization.quantize_dynamic` (deprecated, CPU only, fp32
  activations; fbgemm/x86 kernels that are much faster than torchao's eager int8 path on
  CPUs with VNNI/AVX-512).

Which one is faster is measured per device (model_opt.optimize), not assumed.
Conv, norm and embedding parameters stay in floating point.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from model_opt.precision import OptimizeError
from model_opt.variant import Variant

# Linear layers the pytorch engine leaves in float: the proxy's FlowGenerator reads
# `t_mlp1.weight.dtype` to cast its timestep features, and a dynamic int8 Linear's
# `weight` is a method. (256 x dim weights per generator: 0.1% of `full`.)
PYTORCH_INT8_SKIP = ("t_mlp1",)


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
    """Quantize `module`'s Linear layers in place (the module keeps its identity)."""
    if variant.quantize == "none":
        return module
    if variant.engine == "torchao":
        from torchao.quantization import quantize_

        quantize_(module, torchao_config(variant.quantize))
        return module
    with warnings.catch_warnings():  # quantize_dynamic is deprecated; we measured it
        warnings.simplefilter("ignore")
        targets = {
            name
            for name in linear_names(module)
            if name.rsplit(".", 1)[-1] not in PYTORCH_INT8_SKIP
        }
        return torch.ao.quantization.quantize_dynamic(
            module, targets, dtype=torch.qint8, inplace=True
        )


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
