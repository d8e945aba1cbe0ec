"""A proxy model directory the server will load: random weights (seeded) plus the
gen3d-manifest.json listing them, which the server requires (gen3d.serve.artifact)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gen3d.model_opt.manifest import write_manifest
from gen3d.serve.backends.proxy.model import ProxyConfig
from gen3d.serve.backends.proxy.weights import write_weights


def init_proxy_model(
    config: ProxyConfig,
    seed: int,
    out_dir: Path,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Path, Path]:
    """config.json + proxy.safetensors (byte-identical for the same seed) + the manifest.
    Returns the config and weights paths."""
    config_path, weights_path = write_weights(config, seed, out_dir, progress)
    write_manifest(out_dir, "proxy", {"init": {"size": config.size, "seed": seed}})
    return config_path, weights_path
