"""The `proxy` backend's networks: random weights in SAM 3D Objects' compute shape.

Pipeline (one batched pass, like SAM 3D's two-stage latent flow matching):

  image + mask --ViT/14 encoder--> condition tokens
  noise --stage-1 flow transformer x steps (CFG)--> coarse latent   (g^3 tokens x 8 ch)
  noise --stage-2 flow transformer x steps (CFG, sees stage 1)--> refined latent
  refined latent --3D conv decoder--> occupancy logits (R^3, R = g * 2^levels)

Nothing here is trained; the sizes exist so that time and memory behave like the real
model. `build_model` only builds (any device, "meta" included); weights are loaded by
gen3d.serve.backends.proxy.weights so the same builder serves init, load and model_opt.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

SIZES = ("tiny", "full")


@dataclass(frozen=True)
class ProxyConfig:
    size: str
    image_size: int  # encoder input side, pixels (multiple of patch_size)
    patch_size: int
    in_channels: int  # RGB + mask
    encoder_dim: int
    encoder_depth: int
    encoder_heads: int
    latent_grid: int  # g: the latent is a g^3 grid of tokens
    latent_channels: int
    stage1_dim: int
    stage1_depth: int
    stage1_heads: int
    stage1_steps: int
    stage1_cfg: float  # classifier-free guidance strength; > 0 doubles the batch per step
    stage2_dim: int
    stage2_depth: int
    stage2_heads: int
    stage2_steps: int
    stage2_cfg: float
    decoder_channels: tuple[int, ...]  # one x2 upsampling per entry after the first
    rescale_t: float = 3.0  # SAM 3D's time-rescaling of the flow schedule
    mlp_ratio: float = 4.0

    @property
    def tokens(self) -> int:
        return self.latent_grid**3

    @property
    def occupancy_resolution(self) -> int:
        return self.latent_grid * 2 ** (len(self.decoder_channels) - 1)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["decoder_channels"] = list(self.decoder_channels)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProxyConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown proxy config keys: {', '.join(sorted(unknown))}")
        values = dict(data)
        values["decoder_channels"] = tuple(values["decoder_channels"])
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError("image_size must be a multiple of patch_size")
        for dim, heads in (
            (self.encoder_dim, self.encoder_heads),
            (self.stage1_dim, self.stage1_heads),
            (self.stage2_dim, self.stage2_heads),
        ):
            if dim % heads:
                raise ValueError(f"width {dim} is not divisible by {heads} heads")
        if self.stage1_steps < 1 or self.stage2_steps < 1:
            raise ValueError("step counts must be >= 1")
        if not self.decoder_channels:
            raise ValueError("decoder_channels must not be empty")


def config_for(size: str, **overrides: Any) -> ProxyConfig:
    """The named size, optionally with fields replaced."""
    if size not in _SIZES:
        raise ValueError(f"unknown proxy size {size!r}; choose from {', '.join(SIZES)}")
    config = replace(_SIZES[size], **overrides) if overrides else _SIZES[size]
    config.validate()
    return config


_SIZES = {
    # CPU tests: < 100 ms per sample on 2 cores (docs/proxy.md has the measurement).
    "tiny": ProxyConfig(
        size="tiny",
        image_size=56,
        patch_size=14,
        in_channels=4,
        encoder_dim=64,
        encoder_depth=2,
        encoder_heads=2,
        latent_grid=6,
        latent_channels=8,
        stage1_dim=64,
        stage1_depth=2,
        stage1_heads=2,
        stage1_steps=4,
        stage1_cfg=7.0,
        stage2_dim=64,
        stage2_depth=2,
        stage2_heads=2,
        stage2_steps=4,
        stage2_cfg=5.0,
        decoder_channels=(32, 16, 8),
    ),
    # GPU: DINOv2-L/14 at 518 px; stage 1 ~ SAM 3D's 1.2B geometry flow transformer on
    # its 16^3 x 8 latent; stage 2 a TRELLIS-large-like 24 x 1024 flow transformer;
    # both 25 steps with CFG 7 / 5 as upstream's pipeline defaults; 64^3 occupancy.
    "full": ProxyConfig(
        size="full",
        image_size=518,
        patch_size=14,
        in_channels=4,
        encoder_dim=1024,
        encoder_depth=24,
        encoder_heads=16,
        latent_grid=16,
        latent_channels=8,
        stage1_dim=1536,
        stage1_depth=24,
        stage1_heads=24,
        stage1_steps=25,
        stage1_cfg=7.0,
        stage2_dim=1024,
        stage2_depth=24,
        stage2_heads=16,
        stage2_steps=25,
        stage2_cfg=5.0,
        decoder_channels=(256, 128, 64),
    ),
}


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, context_dim: int | None = None) -> None:
        super().__init__()
        self.heads = heads
        self.cross = context_dim is not None
        if self.cross:
            self.q = nn.Linear(dim, dim)
            self.kv = nn.Linear(context_dim, 2 * dim)
        else:
            self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        h = self.heads
        if self.cross:
            assert context is not None
            q = self.q(x).view(b, n, h, d // h).transpose(1, 2)
            k, v = self.kv(context).view(b, -1, 2, h, d // h).permute(2, 0, 3, 1, 4)
        else:
            q, k, v = self.qkv(x).view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class MLP(nn.Module):
    def __init__(self, dim: int, ratio: float) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class ViTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLP(dim, mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ImageEncoder(nn.Module):
    """ViT with 14-pixel patches and a class token (DINOv2's layout)."""

    def __init__(self, config: ProxyConfig) -> None:
        super().__init__()
        dim, patches = config.encoder_dim, (config.image_size // config.patch_size) ** 2
        self.patch_embed = nn.Conv2d(
            config.in_channels, dim, kernel_size=config.patch_size, stride=config.patch_size
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, patches + 1, dim))
        self.blocks = nn.ModuleList(
            ViTBlock(dim, config.encoder_heads, config.mlp_ratio)
            for _ in range(config.encoder_depth)
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class FlowBlock(nn.Module):
    """DiT block: adaLN-modulated self-attention and MLP, plus cross-attention to the
    image tokens (TRELLIS / SAM 3D style)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.self_attn = Attention(dim, heads)
        self.norm_cross = nn.LayerNorm(dim, eps=1e-6)
        self.cross_attn = Attention(dim, heads, context_dim=dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP(dim, mlp_ratio)
        self.modulation = nn.Linear(dim, 6 * dim)

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = (
            self.modulation(F.silu(t_emb)).unsqueeze(1).chunk(6, dim=-1)
        )
        x = x + gate1 * self.self_attn(self.norm1(x) * (1 + scale1) + shift1)
        x = x + self.cross_attn(self.norm_cross(x), context)
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)


class FlowGenerator(nn.Module):
    """Velocity field v(x_t, t | image tokens) over the g^3 latent tokens."""

    FREQ_DIM = 256

    def __init__(
        self, config: ProxyConfig, dim: int, depth: int, heads: int, in_channels: int
    ) -> None:
        super().__init__()
        self.input = nn.Linear(in_channels, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, config.tokens, dim))
        self.context = nn.Linear(config.encoder_dim, dim)
        self.t_mlp1 = nn.Linear(self.FREQ_DIM, dim)
        self.t_mlp2 = nn.Linear(dim, dim)
        self.blocks = nn.ModuleList(FlowBlock(dim, heads, config.mlp_ratio) for _ in range(depth))
        self.norm_out = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.modulation_out = nn.Linear(dim, 2 * dim)
        self.output = nn.Linear(dim, config.latent_channels)

    def timestep_embedding(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Sinusoidal features of t in `dtype` (the activations' dtype: the layers'
        weights may be quantized tensors, or packed params with no `.dtype` at all)."""
        half = self.FREQ_DIM // 2
        freqs = torch.exp(
            -math.log(10_000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half
        )
        args = (t.float() * 1000.0)[:, None] * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(dtype)
        return self.t_mlp2(F.silu(self.t_mlp1(emb)))

    def forward(self, x: torch.Tensor, t: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        h = self.input(x) + self.pos_embed
        t_emb = self.timestep_embedding(t, x.dtype)
        context = self.context(image_tokens)
        for block in self.blocks:
            h = block(h, t_emb, context)
        shift, scale = self.modulation_out(F.silu(t_emb)).unsqueeze(1).chunk(2, dim=-1)
        return self.output(self.norm_out(h) * (1 + scale) + shift)


class OccupancyDecoder(nn.Module):
    """3D conv decoder: (B, C, g, g, g) latent -> (B, R, R, R) occupancy logits."""

    def __init__(self, config: ProxyConfig) -> None:
        super().__init__()
        chans = config.decoder_channels
        self.input = nn.Conv3d(config.latent_channels, chans[0], 3, padding=1)
        self.ups = nn.ModuleList()
        for c_in, c_out in itertools.pairwise(chans):
            self.ups.append(
                nn.ModuleDict(
                    {
                        "norm": nn.GroupNorm(min(8, c_in), c_in),
                        "conv": nn.Conv3d(c_in, c_out, 3, padding=1),
                    }
                )
            )
        self.norm_out = nn.GroupNorm(min(8, chans[-1]), chans[-1])
        self.output = nn.Conv3d(chans[-1], 1, 3, padding=1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        h = self.input(latent)
        for up in self.ups:
            h = F.interpolate(F.silu(up["norm"](h)), scale_factor=2, mode="nearest")
            h = up["conv"](h)
        return self.output(F.silu(self.norm_out(h))).squeeze(1)


class ProxyModel(nn.Module):
    """The four stages model_opt may transform, as named submodules."""

    STAGES = ("encoder", "generator_stage1", "generator_stage2", "decoder")

    def __init__(self, config: ProxyConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.encoder = ImageEncoder(c)
        self.generator_stage1 = FlowGenerator(
            c, c.stage1_dim, c.stage1_depth, c.stage1_heads, c.latent_channels
        )
        # Stage 2 sees its own noisy latent and the finished stage-1 latent.
        self.generator_stage2 = FlowGenerator(
            c, c.stage2_dim, c.stage2_depth, c.stage2_heads, 2 * c.latent_channels
        )
        self.decoder = OccupancyDecoder(c)

    def stages(self) -> dict[str, nn.Module]:
        return {name: getattr(self, name) for name in self.STAGES}


def build_model(config: ProxyConfig, device: str | torch.device = "meta") -> ProxyModel:
    """Build the modules without meaningful weights ("meta": no memory at all)."""
    config.validate()
    with torch.device(device):
        return ProxyModel(config)


def parameter_counts(config: ProxyConfig) -> dict[str, int]:
    """Parameters per stage and in total, counted on a meta-device build."""
    model = build_model(config, "meta")
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in model.stages().items()}
    counts["total"] = sum(counts.values())
    return counts
