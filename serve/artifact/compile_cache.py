"""torch.compile for the stages, and the compile cache that ships inside the artifact.

What is shipped is inductor's local cache directory (FX graph cache, AOTAutograd cache
and the compiled kernels: C++ shared objects on CPU, Triton cubins on CUDA), written
during `gen3d optimize` into OUT/compile_cache/inductor. We measured torch's portable
`torch.compiler.save_cache_artifacts()` on this CPU too: it carries the graph caches but
not the compiled C++ kernels, so a cold start still rebuilt them (no gain: warm-up 24 s
with it vs 22 s without, against 2.6 s with the directory).

The cache is code (Python wrappers, shared objects, pickled graph entries), so it is
only ever read after the manifest's sha256 check, and only from an artifact you built.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from torch import nn

log = logging.getLogger("gen3d.model_opt")

CACHE_SUBDIR = "compile_cache/inductor"
CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"
COMPILE_OPTIONS: dict[str, Any] = {"backend": "inductor", "dynamic": None, "mode": None}
_TRANSIENT = ("locks",)  # inductor's lock files: meaningless in another process


def compile_stages(modules: Iterable[nn.Module], options: dict[str, Any] | None = None) -> None:
    """nn.Module.compile in place: state dicts and module identity stay as they were."""
    opts = {**COMPILE_OPTIONS, **(options or {})}
    for module in modules:
        module.compile(backend=opts["backend"], dynamic=opts["dynamic"], mode=opts["mode"])


def point_inductor_at(directory: Path) -> None:
    """Make this process's inductor read and write its cache in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[CACHE_ENV] = str(directory)


def finish_cache(out_dir: Path) -> list[str]:
    """Drop transient files from the cache written into out_dir; returns what remains."""
    cache = out_dir / CACHE_SUBDIR
    for name in _TRANSIENT:
        shutil.rmtree(cache / name, ignore_errors=True)
    return sorted(p.relative_to(out_dir).as_posix() for p in cache.rglob("*") if p.is_file())


def restore_cache(model_dir: Path, manifest: dict[str, Any]) -> Path | None:
    """Copy the shipped cache into a private writable directory (the model dir is
    read-only in SageMaker) and point inductor at it. None when the artifact has none or
    was built by another torch (its keys would all miss: we compile from scratch)."""
    import torch

    source = model_dir / CACHE_SUBDIR
    if not source.is_dir():
        log.warning("compile cache %s missing; compiling from scratch", source)
        return None
    built_with = manifest.get("libraries", {}).get("torch")
    if built_with != torch.__version__:
        log.warning(
            "compile cache was built with torch %s, this is %s; compiling from scratch",
            built_with,
            torch.__version__,
        )
        return None
    target = Path(tempfile.mkdtemp(prefix="gen3d-inductor-"))
    shutil.copytree(source, target, dirs_exist_ok=True)
    point_inductor_at(target)
    log.info("compile cache restored from %s into %s", source, target)
    return target
