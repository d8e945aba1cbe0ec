"""The proxy's sampling: flow-matching step loops with classifier-free guidance, the
whole batched pipeline (encoder -> stage 1 -> stage 2 -> decoder) and its FLOP count."""

from __future__ import annotations

import itertools

import torch

from gen3d.serve.backends.proxy.model import FlowGenerator, ProxyConfig, ProxyModel, build_model


def flow_schedule(steps: int, rescale_t: float) -> list[float]:
    """t from 1 (noise) to 0 (data), rescaled towards the noisy end like SAM 3D."""
    ts = [1.0 - i / steps for i in range(steps + 1)]
    return [rescale_t * t / (1.0 + (rescale_t - 1.0) * t) for t in ts]


def sample_flow(
    generator: FlowGenerator,
    noise: torch.Tensor,
    image_tokens: torch.Tensor,
    steps: int,
    cfg: float,
    rescale_t: float,
    extra: torch.Tensor | None = None,
) -> torch.Tensor:
    """Euler integration of the flow from noise (fp32 state) to a latent.

    With cfg > 0 each step runs the conditional and unconditional branches as one batch
    of 2B (zeroed image tokens for the unconditional branch), as SAM 3D does.
    """
    dtype = image_tokens.dtype
    x = noise
    schedule = flow_schedule(steps, rescale_t)
    context = image_tokens
    if cfg > 0:
        context = torch.cat([image_tokens, torch.zeros_like(image_tokens)])
    for t_now, t_next in itertools.pairwise(schedule):
        inputs = x.to(dtype) if extra is None else torch.cat([x.to(dtype), extra], dim=-1)
        if cfg > 0:
            inputs = torch.cat([inputs, inputs])
        t = torch.full((len(inputs),), t_now, device=x.device)
        velocity = generator(inputs, t, context).float()
        if cfg > 0:
            cond, uncond = velocity.chunk(2)
            velocity = uncond + cfg * (cond - uncond)
        x = x + (t_next - t_now) * velocity
    return x


def run_pipeline(
    model: ProxyModel,
    images: torch.Tensor,
    noise1: torch.Tensor,
    noise2: torch.Tensor,
    stage1_steps: int,
    stage2_steps: int,
) -> torch.Tensor:
    """images (B, 4, S, S) in the model dtype, noise (B, g^3, C) fp32 -> occupancy
    logits (B, R, R, R) fp32. Every op is per-sample, so a sample's result does not
    depend on what else is in the batch (up to kernel-level rounding)."""
    c = model.config
    tokens = model.encoder(images)
    coarse = sample_flow(
        model.generator_stage1, noise1, tokens, stage1_steps, c.stage1_cfg, c.rescale_t
    )
    fine = sample_flow(
        model.generator_stage2,
        noise2,
        tokens,
        stage2_steps,
        c.stage2_cfg,
        c.rescale_t,
        extra=coarse.to(tokens.dtype),
    )
    g = c.latent_grid
    grid = fine.transpose(1, 2).reshape(len(fine), c.latent_channels, g, g, g)
    return model.decoder(grid.to(tokens.dtype)).float()


def flop_counts(config: ProxyConfig) -> dict[str, int]:
    """FLOPs of one sample through each stage (whole step loops, CFG included), counted by
    torch's FlopCounterMode on meta tensors: exact for matmuls/convs/attention, no memory,
    no compute (full takes ~20 s of Python)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(config, "meta")
    with torch.device("meta"):
        images = torch.zeros(1, config.in_channels, config.image_size, config.image_size)
        noise = torch.zeros(1, config.tokens, config.latent_channels)
    c = config
    counts: dict[str, int] = {}
    with torch.inference_mode():
        with FlopCounterMode(display=False) as fc:
            tokens = model.encoder(images)
        counts["encoder"] = fc.get_total_flops()
        with FlopCounterMode(display=False) as fc:
            coarse = sample_flow(
                model.generator_stage1, noise, tokens, c.stage1_steps, c.stage1_cfg, c.rescale_t
            )
        counts["generator_stage1"] = fc.get_total_flops()
        with FlopCounterMode(display=False) as fc:
            fine = sample_flow(
                model.generator_stage2,
                noise,
                tokens,
                c.stage2_steps,
                c.stage2_cfg,
                c.rescale_t,
                extra=coarse,
            )
        counts["generator_stage2"] = fc.get_total_flops()
        g = c.latent_grid
        grid = fine.transpose(1, 2).reshape(1, c.latent_channels, g, g, g)
        with FlopCounterMode(display=False) as fc:
            model.decoder(grid)
        counts["decoder"] = fc.get_total_flops()
    counts["total"] = sum(counts.values())
    return counts
