"""INT8 storage of the float tensors the Linear quantizers leave alone (convs, patch
embedding, positional embeddings): the size target, and exact round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch import nn

from gen3d.model_opt.optimize import build_proxy_artifact
from gen3d.model_opt.report import int8_stored_tensors, weight_bytes
from gen3d.serve.artifact.manifest import read_manifest
from gen3d.serve.artifact.precision import OptimizeError
from gen3d.serve.artifact.quantize import DynamicLinear, quantize_stage
from gen3d.serve.artifact.variant import Variant
from gen3d.serve.artifact.weights import save_optimized
from gen3d.serve.backends.proxy.artifact import load_proxy_artifact
from gen3d.serve.backends.proxy.flow import run_pipeline
from gen3d.serve.backends.proxy.model import build_model, config_for
from gen3d.serve.backends.proxy.weights import WEIGHTS_FILE, load_weights

CPU = torch.device("cpu")
INT8_DYNAMIC = [
    Variant("fp32", "int8-dynamic", "torchao"),
    Variant("fp32", "int8-dynamic", "pytorch"),
]


def non_linear_matrices() -> set[str]:
    """Tensors with ndim >= 2 outside nn.Linear, found on a fresh fp32 model."""
    model = build_model(config_for("tiny"), "meta")
    modules = dict(model.named_modules())
    return {
        name
        for name, p in model.named_parameters()
        if p.ndim >= 2 and not isinstance(modules[name.rpartition(".")[0]], nn.Linear)
    }


@pytest.mark.slow  # builds an int8 artifact per variant
@pytest.mark.parametrize("variant", INT8_DYNAMIC, ids=lambda v: v.label)
def test_int8_dynamic_weight_bytes_at_most_0_3_of_fp32(variant, tiny_dir, tmp_path) -> None:
    out = build_proxy_artifact(tiny_dir, tmp_path / "a", variant, CPU, max_batch_size=1).out_dir
    # The report's own byte count (safetensors headers of the files as written).
    ratio = weight_bytes(out) / weight_bytes(tiny_dir)
    assert ratio <= 0.3, ratio
    stored = int8_stored_tensors(out)
    assert set(stored) == non_linear_matrices()
    assert {"encoder.patch_embed.weight", "generator_stage1.pos_embed"} <= set(stored)


def reference_fp32(tiny_dir: Path) -> dict[str, torch.Tensor]:
    model = build_model(config_for("tiny"), "meta")
    load_weights(model, tiny_dir / WEIGHTS_FILE, CPU, torch.float32)
    return dict(model.state_dict())


@pytest.mark.slow  # builds an int8 artifact per variant and runs both models
@pytest.mark.parametrize(
    "variant",
    [Variant("fp32", "int8-dynamic", "pytorch"), Variant("bf16", "int8-dynamic", "torchao")],
    ids=lambda v: v.label,
)
def test_int8_storage_round_trips_exactly(variant, tiny_dir, tmp_path) -> None:
    result = build_proxy_artifact(tiny_dir, tmp_path / "a", variant, CPU, max_batch_size=1)
    in_process = result.backend.model
    dtype = result.backend.dtype
    fp32 = reference_fp32(tiny_dir)
    loaded, _, _ = load_proxy_artifact(
        result.out_dir, read_manifest(result.out_dir), result.backend.config, CPU, "auto"
    )
    stored = int8_stored_tensors(result.out_dir)
    assert stored
    loaded_state = dict(loaded.state_dict())
    with safe_open(str(result.out_dir / "model.safetensors"), framework="pt") as f:
        assert not set(stored) & set(f.keys())  # no float copy of a stored tensor
        for name in stored:
            data, scale = f.get_tensor(f"{name}:int8"), f.get_tensor(f"{name}:int8_scale")
            assert data.dtype == torch.int8 and scale.dtype == torch.float32
            assert data.shape == fp32[name].shape and scale.numel() > 1  # per channel
            dequantized = (data.float() * scale).to(dtype)
            # What was measured in process is what is stored, and what the server loads.
            assert torch.equal(in_process.get_parameter(name), dequantized), name
            assert torch.equal(loaded_state[name], dequantized), name
            # Symmetric rounding: at most half a step from the weights it was given.
            err = (data.float() * scale - fp32[name].to(dtype).float()).abs()
            assert (err <= scale / 2 * (1 + 1e-5)).all(), name
    if variant.engine == "pytorch":  # t_mlp1 included now that the proxy allows it
        assert not [n for n, m in loaded.named_modules() if type(m) is nn.Linear]
        assert isinstance(loaded.generator_stage1.t_mlp1, DynamicLinear)
    config = result.backend.config
    gen = torch.Generator().manual_seed(3)
    size, tokens = config.image_size, config.tokens
    images = torch.randn(1, config.in_channels, size, size, generator=gen).to(dtype)
    noise1 = torch.randn(1, tokens, config.latent_channels, generator=gen)
    noise2 = torch.randn(1, tokens, config.latent_channels, generator=gen)
    with torch.inference_mode():
        expected = run_pipeline(in_process, images, noise1, noise2, 2, 2)
        assert torch.equal(run_pipeline(loaded, images, noise1, noise2, 2, 2), expected)


def test_weights_changed_after_int8_storage_are_refused(tiny_dir, tmp_path) -> None:
    """Saving must not ship weights other than the dequantized ones that were measured."""
    variant = Variant("fp32", "int8-dynamic", "pytorch")
    model = build_model(config_for("tiny"), "meta")
    load_weights(model, tiny_dir / WEIGHTS_FILE, CPU, torch.float32)
    model.eval().requires_grad_(False)
    for stage in model.stages().values():
        quantize_stage(stage, variant)
    with torch.no_grad():
        model.decoder.input.weight.add_(1e-3)
    with pytest.raises(OptimizeError, match=r"decoder\.input\.weight changed"):
        save_optimized(model, variant, tmp_path / "model.safetensors")
