"""Measure one model directory as the server would load it, in a fresh process:
`python -m gen3d.model_opt.measure --model-dir DIR --device cpu --out RESULT_DIR`.

A fresh process per variant keeps peak memory (CPU RSS high-water mark or CUDA max
allocated) and compile state from leaking between variants. It writes result.json
(timings, memory) and outputs.npz (occupancy logits and meshes for the fixed drift
inputs), which the parent compares against fp32 (gen3d.model_opt.report)."""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DRIFT_SEEDS = (0, 1, 2, 3)
IMAGE_SIZE = 128


def drift_samples() -> list[Any]:
    from gen3d.serve.backends.base import synthetic_sample

    return [synthetic_sample(IMAGE_SIZE, seed=s) for s in DRIFT_SEEDS]


def _median_seconds(fn: Any, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(
    model_dir: Path, device: str, max_batch_size: int, runs: int
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    import torch

    from gen3d.serve.backends.base import synthetic_sample
    from gen3d.serve.backends.proxy.backend import ProxyBackend
    from gen3d.serve.settings import Settings

    cuda = device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    backend = ProxyBackend()
    settings = Settings(
        backend="proxy", model_dir=model_dir, device=device, max_batch_size=max_batch_size
    )
    start = time.perf_counter()
    backend.load(model_dir, settings)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    backend.warmup()
    warmup_s = time.perf_counter() - start
    one = [synthetic_sample(IMAGE_SIZE, seed=0)]
    full = [synthetic_sample(IMAGE_SIZE, seed=i) for i in range(max_batch_size)]
    batch1 = _median_seconds(lambda: backend.predict(one), runs)
    batch_max = _median_seconds(lambda: backend.predict(full), runs) / max_batch_size
    samples = drift_samples()
    config = backend._loaded().config
    from gen3d.serve.backends.proxy import mesh as proxy_mesh

    images = [
        proxy_mesh.encoder_input(s.image, s.mask, proxy_mesh.square_crop(s.mask), config.image_size)
        for s in samples
    ]
    steps = (config.stage1_steps, config.stage2_steps)
    logits = np.stack(
        [backend._forward([im], [s.seed], steps)[0] for im, s in zip(images, samples, strict=True)]
    )
    outputs: dict[str, np.ndarray] = {"logits": logits}
    for i, asset in enumerate(backend.predict(samples)):
        if isinstance(asset, Exception):
            raise asset
        outputs[f"vertices_{i}"] = asset.mesh.vertices
        outputs[f"faces_{i}"] = asset.mesh.faces
    result: dict[str, Any] = {
        "variant": backend.variant,
        "device": device,
        "device_name": torch.cuda.get_device_name() if cuda else _cpu_name(),
        "max_batch_size": max_batch_size,
        "runs": runs,
        "load_s": load_s,
        "warmup_s": warmup_s,
        "latency_ms_per_sample_batch1": 1000 * batch1,
        "latency_ms_per_sample_batch_max": 1000 * batch_max,
        "peak_memory_kind": "cuda_max_allocated" if cuda else "cpu_peak_rss",
        "peak_memory_bytes": (
            torch.cuda.max_memory_allocated()
            if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        ),
        "rss_before_load_bytes": rss_before,
        "torch_threads": torch.get_num_threads(),
    }
    return result, outputs


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "cpu"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    result, outputs = measure(args.model_dir, args.device, args.max_batch_size, args.runs)
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / "outputs.npz", **outputs)
    (args.out / "result.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
