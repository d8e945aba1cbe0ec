"""Deterministic random weights for the proxy model, written and read as safetensors.

Each tensor is drawn from its own generator seeded from (seed, tensor name), so a file
depends only on (config, seed): same inputs, byte-identical file. Tensors are produced
and written one at a time (the `full` size is ~8.5 GB in fp32; no second copy is ever
held), in the safetensors layout: u64 header length, JSON header, raw little-endian data.
Loading goes through the safetensors library (never pickle), tensor by tensor, straight
to the target device and dtype.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from gen3d.serve.backends.proxy.model import ProxyConfig, ProxyModel, build_model
from gen3d.serve.errors import ArtifactError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "proxy.safetensors"
FORMAT_VERSION = 1
INIT_STD = 0.02  # ViT/DiT-style normal init for every weight matrix and embedding


def tensor_seed(seed: int, name: str) -> int:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def _init_rules(model: ProxyModel) -> dict[str, str]:
    """name -> "zeros" | "ones" | "normal", from the module that owns each parameter."""
    rules: dict[str, str] = {}
    for module_name, module in model.named_modules():
        for param_name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if param_name == "bias":
                rules[full] = "zeros"
            elif isinstance(module, nn.LayerNorm | nn.GroupNorm):
                rules[full] = "ones"
            else:
                rules[full] = "normal"
    return rules


def iter_random_tensors(config: ProxyConfig, seed: int) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, fp32 tensor) in sorted name order; each drawn independently of the others."""
    model = build_model(config, "meta")
    rules = _init_rules(model)
    for name, meta in sorted(model.state_dict().items()):
        rule = rules[name]
        if rule == "zeros":
            yield name, torch.zeros(meta.shape)
        elif rule == "ones":
            yield name, torch.ones(meta.shape)
        else:
            gen = torch.Generator().manual_seed(tensor_seed(seed, name))
            yield name, torch.randn(meta.shape, generator=gen) * INIT_STD


def write_weights(
    config: ProxyConfig,
    seed: int,
    out_dir: Path,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Path, Path]:
    """Write config.json and proxy.safetensors into out_dir; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model = build_model(config, "meta")
    shapes = {name: list(t.shape) for name, t in sorted(model.state_dict().items())}
    header: dict[str, object] = {}
    offset = 0
    for name, shape in shapes.items():
        nbytes = 4 * _numel(shape)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    metadata = {
        "format": "pt",
        "gen3d_proxy": str(FORMAT_VERSION),
        "size": config.size,
        "seed": str(seed),
    }
    header["__metadata__"] = metadata
    header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)  # data starts 8-byte aligned
    total = offset
    weights_path = out_dir / WEIGHTS_FILE
    tmp = weights_path.with_suffix(".tmp")
    written = 0
    with tmp.open("wb") as fh:
        fh.write(struct.pack("<Q", len(header_bytes)))
        fh.write(header_bytes)
        for name, tensor in iter_random_tensors(config, seed):
            assert list(tensor.shape) == shapes[name]
            data = tensor.contiguous().numpy().astype("<f4", copy=False).tobytes()
            fh.write(data)
            written += len(data)
            if progress:
                progress(written, total)
    tmp.replace(weights_path)
    config_path = out_dir / CONFIG_FILE
    payload = {
        "backend": "proxy",
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "weights": WEIGHTS_FILE,
        "config": config.to_dict(),
    }
    config_path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return config_path, weights_path


def _numel(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def read_config(model_dir: Path) -> tuple[ProxyConfig, int]:
    """The config and seed stored in model_dir/config.json."""
    path = model_dir / CONFIG_FILE
    if not path.is_file():
        raise ArtifactError(
            f"no proxy model in {model_dir} (missing {CONFIG_FILE}); create one with "
            f"`gen3d proxy init --size tiny --out {model_dir}`"
        )
    try:
        payload = json.loads(path.read_text())
        if payload.get("backend") != "proxy":
            raise ValueError(f"backend is {payload.get('backend')!r}, not 'proxy'")
        return ProxyConfig.from_dict(payload["config"]), int(payload.get("seed", 0))
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{path}: not a proxy config ({exc})") from None


def load_weights(
    model: ProxyModel, path: Path, device: torch.device, dtype: torch.dtype
) -> ProxyModel:
    """Fill `model` (built on any device, "meta" included) from safetensors at `path`,
    casting floating tensors to `dtype` on `device` one tensor at a time."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise ArtifactError(f"missing proxy weights {path}")
    expected = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            names = set(f.keys())
            missing, unexpected = set(expected) - names, names - set(expected)
            if missing or unexpected:
                raise ArtifactError(
                    f"{path} does not match the config: missing {sorted(missing)[:3]}, "
                    f"unexpected {sorted(unexpected)[:3]}"
                )
            for name in sorted(names):
                tensor = f.get_tensor(name)
                if tuple(tensor.shape) != tuple(expected[name].shape):
                    raise ArtifactError(
                        f"{path}: {name} has shape {tuple(tensor.shape)}, config wants "
                        f"{tuple(expected[name].shape)}"
                    )
                if tensor.is_floating_point():
                    tensor = tensor.to(dtype)
                state[name] = tensor.to(device)
    except SafetensorError as exc:
        raise ArtifactError(f"{path}: unreadable safetensors ({exc})") from None
    model.load_state_dict(state, strict=True, assign=True)
    return model
