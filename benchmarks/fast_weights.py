"""Proxy weights drawn on the device that will run them and written in seconds.

`gen3d proxy init` draws every tensor on the CPU and writes fp32 (full: ~8.5 GB, minutes):
right for a byte-identical artifact, too slow for a GPU window of a few minutes. Here
each tensor comes from its own generator on `device`, seeded from (seed, tensor name)
exactly as the CPU writer seeds it, so the weights depend only on (config, seed, device
type); they are stored in `dtype` (fp16 by default: half the bytes, and the serving
precision of the GPU check) with the same config.json and manifest the server verifies.
The values differ from the CPU writer's (another generator); the compute does not.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from gen3d.model_opt.manifest import write_manifest
from gen3d.serve.backends.proxy.model import ProxyConfig, build_model
from gen3d.serve.backends.proxy.weights import (
    CONFIG_FILE,
    FORMAT_VERSION,
    INIT_STD,
    WEIGHTS_FILE,
    _init_rules,
    tensor_seed,
)


def draw_state(
    config: ProxyConfig, seed: int, device: str, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """Every tensor of the proxy model, drawn on `device` (normal * INIT_STD, ones, zeros
    by the same rules as the CPU writer), in `dtype`."""
    model = build_model(config, "meta")
    rules = _init_rules(model)
    state: dict[str, torch.Tensor] = {}
    for name, meta in sorted(model.state_dict().items()):
        rule = rules[name]
        if rule == "zeros":
            tensor = torch.zeros(meta.shape, device=device, dtype=dtype)
        elif rule == "ones":
            tensor = torch.ones(meta.shape, device=device, dtype=dtype)
        else:
            gen = torch.Generator(device=device).manual_seed(tensor_seed(seed, name))
            tensor = torch.randn(meta.shape, generator=gen, device=device) * INIT_STD
            tensor = tensor.to(dtype)
        state[name] = tensor
    return state


def write_model_dir(
    config: ProxyConfig,
    seed: int,
    out_dir: Path,
    device: str = "cpu",
    dtype: torch.dtype = torch.float16,
) -> dict[str, Any]:
    """config.json + proxy.safetensors + gen3d-manifest.json in out_dir; returns timings
    (draw, write, manifest seconds) and the weights' size."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    state = draw_state(config, seed, device, dtype)
    if device == "cuda":
        torch.cuda.synchronize()
    drawn = time.perf_counter()
    metadata = {
        "format": "pt",
        "gen3d_proxy": str(FORMAT_VERSION),
        "size": config.size,
        "seed": str(seed),
        "drawn_on": torch.device(device).type,
    }
    save_file({k: v.cpu() for k, v in state.items()}, str(out_dir / WEIGHTS_FILE), metadata)
    del state
    payload = {
        "backend": "proxy",
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "weights": WEIGHTS_FILE,
        "config": config.to_dict(),
    }
    (out_dir / CONFIG_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    written = time.perf_counter()
    init = {"size": config.size, "seed": seed, "drawn_on": torch.device(device).type}
    write_manifest(out_dir, "proxy", {"init": init})
    done = time.perf_counter()
    if device == "cuda":
        torch.cuda.empty_cache()
    return {
        "draw_s": round(drawn - started, 3),
        "write_s": round(written - drawn, 3),
        "manifest_s": round(done - written, 3),
        "total_s": round(done - started, 3),
        "weights_mb": round((out_dir / WEIGHTS_FILE).stat().st_size / 2**20, 1),
        "dtype": str(dtype).removeprefix("torch."),
        "drawn_on": init["drawn_on"],
    }
