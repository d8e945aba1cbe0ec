"""Cold start to ready: a real server (gen3d.serve.local_server.start_server, the image's gunicorn
configuration) on an artifact, timed from spawn to the first /ping 200, with a fresh
empty TORCHINDUCTOR_CACHE_DIR each time so nothing but the artifact's cache can help."""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gen3d.model_opt.manifest import write_manifest
from gen3d.serve.artifact.compile_cache import CACHE_ENV, CACHE_SUBDIR
from gen3d.serve.artifact.manifest import read_manifest


def time_to_ready(
    model_dir: Path, device: str, max_batch_size: int, timeout_s: float = 600.0
) -> float:
    from gen3d.serve.local_server import start_server

    with tempfile.TemporaryDirectory(prefix="gen3d-cold-") as tmp:
        env = {
            "GEN3D_BACKEND": "proxy",
            "GEN3D_MODEL_DIR": str(model_dir),
            "GEN3D_DEVICE": device,
            "GEN3D_MAX_BATCH_SIZE": str(max_batch_size),
            CACHE_ENV: str(Path(tmp) / "inductor"),
        }
        start = time.monotonic()
        server = start_server(env=env, log_path=Path(tmp) / "server.log")
        try:
            server.wait_ready(timeout_s)
            return time.monotonic() - start
        finally:
            server.stop(timeout_s=10)


def without_cache(model_dir: Path, target: Path) -> Path:
    """A copy of a compiled artifact that ships no cache (the server compiles at start)."""
    shutil.copytree(model_dir, target, ignore=shutil.ignore_patterns("compile_cache", "report"))
    manifest = read_manifest(target)
    assert manifest is not None
    applied = {**manifest["applied"], "compile_cache": None}
    extra = {k: manifest[k] for k in ("device", "min_compute_capability") if k in manifest}
    write_manifest(target, manifest["backend"], applied, extra)
    return target


def compare_cold_starts(
    model_dir: Path,
    device: str,
    runs: int,
    max_batch_size: int,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    manifest = read_manifest(model_dir)
    if manifest is None or not (model_dir / CACHE_SUBDIR).is_dir():
        raise ValueError(f"{model_dir} is not a compiled artifact with a shipped cache")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="gen3d-nocache-") as tmp:
        bare = without_cache(model_dir, Path(tmp) / "artifact")
        cases = {"compile_with_cache": model_dir, "compile_without_cache": bare}
        source = Path(manifest["applied"].get("source", {}).get("model_dir", ""))
        if (source / "config.json").is_file():
            cases["no_compile"] = source
        for name, directory in cases.items():
            times = []
            for i in range(runs):
                times.append(time_to_ready(directory, device, max_batch_size))
                progress(f"cold start {name} #{i + 1}: {times[-1]:.1f} s")
            results[name] = {"runs_s": times, "median_s": statistics.median(times)}
    return results
