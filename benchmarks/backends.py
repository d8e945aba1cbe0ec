"""Loading a backend for a benchmark: its model directory and its settings."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from gen3d.serve.backends import Backend, create_backend
from gen3d.serve.settings import Settings

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
NO_PRECISION = "n/a"  # silhouette is numpy geometry: there is no precision to choose


def default_cache() -> Path:
    """Where generated weights and built variants are kept ($GEN3D_BENCH_CACHE)."""
    if os.environ.get("GEN3D_BENCH_CACHE"):
        return Path(os.environ["GEN3D_BENCH_CACHE"])
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "gen3d" / "bench-models"


def prepare_model_dir(
    backend: str, size: str, model_dir: Path | None, cache: Path | None = None
) -> Path:
    """The model directory to load: the given one, or (proxy) a generated one, cached.

    proxy weights are deterministic (size, seed 0), so a cached directory is reused;
    `full` takes minutes and 8.5 GB to write, so the cache matters there.
    """
    if model_dir is not None:
        if not model_dir.is_dir():
            raise ValueError(f"model directory {model_dir} does not exist")
        return model_dir
    if backend == "silhouette":  # no files, but the server loads from a directory
        empty = (cache or default_cache()) / "silhouette-empty"
        empty.mkdir(parents=True, exist_ok=True)
        return empty
    if backend == "sam3d":
        raise ValueError("the sam3d backend needs --model-dir (SAM 3D Objects checkpoints)")
    from gen3d.model_opt.proxy_model import init_proxy_model
    from gen3d.serve.artifact.manifest import MANIFEST_FILE
    from gen3d.serve.backends.proxy.model import config_for
    from gen3d.serve.backends.proxy.weights import WEIGHTS_FILE

    target = (cache or default_cache()) / f"proxy-{size}-seed0"
    files = (WEIGHTS_FILE, "config.json", MANIFEST_FILE)
    if not all((target / name).is_file() for name in files):
        print(f"writing proxy {size} weights to {target} (once; reused after)", flush=True)
        init_proxy_model(config_for(size), 0, target)
    return target


def default_steps(backend: str, size: str) -> list[int] | None:
    """(stage 1, stage 2) steps of the proxy size, for scaling reduced-step runs."""
    if backend != "proxy":
        return None
    from gen3d.serve.backends.proxy.model import config_for

    config = config_for(size)
    return [config.stage1_steps, config.stage2_steps]


def settings_for(
    backend: str, model_dir: Path, device: str, precision: str, max_batch_size: int, **extra: Any
) -> Settings:
    torch_precision = precision if precision in ("fp32", "fp16", "bf16") else "fp32"
    return Settings(
        backend=backend,
        model_dir=model_dir,
        device=device,
        precision=torch_precision if backend != "silhouette" else "auto",
        max_batch_size=max_batch_size,
        warmup=False,
        **extra,
    )


def server_env(settings: Settings) -> dict[str, str]:
    """The environment that starts a server with these settings (warm-up on, as shipped)."""
    env = settings.as_env()
    env.pop("SAGEMAKER_BIND_TO_PORT", None)
    env["GEN3D_WARMUP"] = "1"
    return env


def load_backend(settings: Settings) -> tuple[Backend, float]:
    """A loaded backend and its load time in seconds."""
    backend = create_backend(settings.backend)
    if settings.backend == "silhouette":  # needs no files, but the directory must exist
        settings.model_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    backend.load(settings.model_dir, settings)
    return backend, time.perf_counter() - started


def release() -> None:
    """Collect a dropped backend's memory before the next configuration loads."""
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
