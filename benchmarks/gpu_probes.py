"""The GPU check's measurements, one function each, on one loaded proxy model directory.

- stage_latency: each stage of the pipeline (encoder, one stage-1 step, one stage-2 step,
  decoder) timed alone at one precision, plus one whole `predict` (mesh included);
- batcher_throughput: batch 1, 2, 4, 8 through the server's own Batcher (the dynamic
  batcher the workers run), with peak device memory per batch size;
- compile_cache: a fresh process compiles the stages with an empty inductor cache (cold),
  a second fresh process with that cache (warm) - gen3d.benchmarks.gpu_compile;
- served: the real server (launcher.start_server) at 1, 4, 16 clients, batching on / off,
  behind nginx when it is installed and without it otherwise (recorded either way).

On CUDA, device time comes from CUDA events and memory from max_memory_allocated; on
CPU (the rehearsal) from perf_counter and peak RSS. Every function returns plain dicts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from gen3d.benchmarks import payloads
from gen3d.benchmarks.backends import load_backend, release, server_env, settings_for
from gen3d.benchmarks.inprocess import RssSampler
from gen3d.benchmarks.loadgen import run_load
from gen3d.benchmarks.server import server_target
from gen3d.benchmarks.stats import summarize

NGINX_PATHS = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")


def _torch() -> Any:
    import torch

    return torch


def timed(fn: Callable[[], Any], device: str, repeats: int, warmup: int = 1) -> list[float]:
    """Seconds per call of fn after `warmup` calls: CUDA events on cuda, else wall."""
    torch = _torch()
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(repeats):
        if device == "cuda":
            begin = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            seconds.append(begin.elapsed_time(end) / 1000)
        else:
            t0 = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - t0)
    return seconds


def _ms(seconds: list[float]) -> dict[str, float]:
    return summarize([s * 1000 for s in seconds])


def samples_with_steps(n: int, steps: int) -> list[Any]:
    return [replace(s, options={"steps": steps}) for s in payloads.batch(n)]


def stage_latency(
    model_dir: Path, device: str, precision: str, steps: int, repeats: int
) -> dict[str, Any]:
    """Milliseconds of each stage at batch 1 (a flow step includes its CFG pair), and of
    one whole predict at `steps` steps per stage; the full 25 + 25-step pipeline's model
    time follows as encoder + 25 x step1 + 25 x step2 + decoder (`full_steps_model_ms`)."""
    torch = _torch()
    from gen3d.serve.backends.proxy.flow import sample_flow

    settings = settings_for("proxy", model_dir, device, precision, 1)
    backend, load_s = load_backend(settings)
    model = backend.model
    c = model.config
    dtype, dev = backend.dtype, backend.device
    gen = torch.Generator(device="cpu").manual_seed(0)
    images = torch.randn(1, c.in_channels, c.image_size, c.image_size, generator=gen)
    images = images.to(dev, dtype)
    noise = torch.randn(1, c.tokens, c.latent_channels, generator=gen).to(dev)
    g = c.latent_grid
    stages: dict[str, Any] = {}
    with torch.inference_mode():
        tokens = model.encoder(images)
        coarse = sample_flow(model.generator_stage1, noise, tokens, 1, c.stage1_cfg, c.rescale_t)
        extra = coarse.to(dtype)
        latent = noise.transpose(1, 2).reshape(1, c.latent_channels, g, g, g).to(dtype)
        calls = {
            "encoder": lambda: model.encoder(images),
            "stage1_step": lambda: sample_flow(
                model.generator_stage1, noise, tokens, 1, c.stage1_cfg, c.rescale_t
            ),
            "stage2_step": lambda: sample_flow(
                model.generator_stage2, noise, tokens, 1, c.stage2_cfg, c.rescale_t, extra
            ),
            "decoder": lambda: model.decoder(latent),
        }
        for name, call in calls.items():
            stages[name] = _ms(timed(call, device, repeats))
    batch = samples_with_steps(1, steps)
    whole = timed(lambda: check_results(backend.predict(batch)), device, max(2, repeats // 2))
    med = {k: v["median"] for k, v in stages.items()}
    result = {
        "precision": precision,
        "variant": backend.variant,
        "load_s": round(load_s, 3),
        "stages_ms": stages,
        "predict_ms": _ms(whole),
        "predict_steps": steps,
        "full_steps_model_ms": med["encoder"]
        + c.stage1_steps * med["stage1_step"]
        + c.stage2_steps * med["stage2_step"]
        + med["decoder"],
        "full_steps": [c.stage1_steps, c.stage2_steps],
    }
    return result  # the caller releases the model (gen3d.benchmarks.backends.release)


def check_results(results: list[Any]) -> None:
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        raise failed[0]


def batcher_throughput(
    model_dir: Path,
    device: str,
    precision: str,
    steps: int,
    batches: list[int],
    rounds: int,
    deadline: float,
) -> list[dict[str, Any]]:
    """Per batch size b: rounds of b one-sample requests submitted together to a Batcher
    of max batch b; throughput (samples/s), the batches it formed, peak memory."""
    torch = _torch()
    from gen3d.serve.model.batching import Batcher

    settings = settings_for("proxy", model_dir, device, precision, max(batches))
    backend, _ = load_backend(settings)
    formed: list[int] = []
    predict = backend.predict

    def counting(batch: list[Any]) -> list[Any]:  # which batches the batcher formed
        formed.append(len(batch))
        return predict(batch)

    backend.predict = counting  # type: ignore[method-assign]
    out = []
    for size in batches:
        if time.monotonic() > deadline:
            out.append({"batch": size, "skipped": "time budget of the check spent"})
            continue
        batcher = Batcher(backend, max_batch_size=size, max_delay_s=0.05, max_queue=4 * size)
        batcher.start()
        samples = samples_with_steps(size, steps)

        def one_round(batcher: Batcher = batcher, samples: list[Any] = samples) -> None:
            jobs = [job for s in samples for job in batcher.submit([s], timeout_s=600.0)]
            results = [batcher.wait(job) for job in jobs]
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                raise failed[0]

        one_round()  # warm-up: this batch size's kernels and allocations
        formed.clear()
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        done = 0
        with RssSampler() as sampler:
            while done < rounds or (done < 2 and time.monotonic() < deadline):
                one_round()
                done += 1
                if time.monotonic() > deadline:
                    break
        elapsed = time.perf_counter() - started
        peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else sampler.peak_mb
        out.append(
            {
                "batch": size,
                "rounds": done,
                "samples_per_s": size * done / elapsed,
                "seconds_per_round": elapsed / done,
                "batches_formed": sorted(set(formed)),
                "mean_batch": sum(formed) / len(formed) if formed else None,
                "peak_memory_mb": round(peak, 1),
                "memory_kind": "cuda_max_allocated" if device == "cuda" else "rss",
            }
        )
    del backend
    release()
    return out


def compile_cache(
    model_dir: Path,
    device: str,
    precision: str,
    steps: int,
    stages: list[str],
    timeout_s: float,
) -> dict[str, Any]:
    """Cold (empty inductor cache) then warm (that cache) compile, each in a fresh process."""
    cache = Path(tempfile.mkdtemp(prefix="gen3d-gpucheck-inductor-"))
    runs: dict[str, Any] = {}
    try:
        for phase in ("cold", "warm"):
            command = [
                sys.executable,
                "-m",
                "gen3d.benchmarks.gpu_compile",
                "--model-dir",
                str(model_dir),
                "--device",
                device,
                "--precision",
                precision,
                "--steps",
                str(steps),
                "--stages",
                ",".join(stages),
            ]
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}
            started = time.monotonic()
            proc = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
            )
            if proc.returncode != 0:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
                raise RuntimeError(f"{phase} compile run failed: {' | '.join(tail)}")
            runs[phase] = json.loads(proc.stdout.strip().splitlines()[-1])
            runs[phase]["process_s"] = round(time.monotonic() - started, 2)
            timeout_s -= time.monotonic() - started
        files = [p for p in cache.rglob("*") if p.is_file()]
        runs["cache_files"] = len(files)
        runs["cache_mb"] = round(sum(p.stat().st_size for p in files) / 2**20, 2)
        runs["stages"] = stages
        cold, warm = runs["cold"]["first_call_s"], runs["warm"]["first_call_s"]
        runs["warm_over_cold"] = warm / cold if cold else None
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return runs


def nginx_present() -> bool:
    return shutil.which("nginx") is not None or any(os.access(p, os.X_OK) for p in NGINX_PATHS)


def served(
    model_dir: Path,
    device: str,
    precision: str,
    steps: int,
    levels: list[int],
    duration_s: float,
    warmup_s: float,
    max_requests: int,
    ready_timeout_s: float,
    server_warmup: bool,
    deadline: float,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """The server end to end: batching on (max batch 8) and off (1), each level in turn;
    a level that would start past `deadline` (time.monotonic()) is recorded as skipped."""
    from gen3d.serve.local_server import gunicorn_master, start_server

    front = "nginx" if nginx_present() else "none"
    results: list[dict[str, Any]] = []
    skipped: list[str] = []
    modes: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="gen3d-gpucheck-") as tmp:
        for mode in ("on", "off"):
            settings = settings_for(
                "proxy",
                model_dir,
                device,
                precision,
                8 if mode == "on" else 1,
                max_batch_delay_ms=10.0,
                max_queue=max(64, 2 * max(levels)),
            )
            env = server_env(settings)
            env["GEN3D_FRONT"] = front
            env["GEN3D_WARMUP"] = "1" if server_warmup else "0"
            server = start_server(env, log_path=Path(tmp) / f"server-{mode}.log")
            try:
                ready_s = server.wait_ready(ready_timeout_s)
                master = gunicorn_master(server)
                behind = master is not None and master != server.process.pid
                modes[mode] = {"ready_s": round(ready_s, 2), "behind_nginx": behind}
                progress(f"  server batching {mode}: ready in {ready_s:.1f} s, front {front}")
                target = server_target(server, steps)
                for level in levels:
                    if time.monotonic() + 2 * (duration_s + warmup_s) > deadline:
                        skipped.append(f"batching {mode} c={level}: time budget spent")
                        continue
                    r = run_load(target, level, duration_s, max_requests, warmup_s, 0.05)
                    r.update(batching=mode, front=front, behind_nginx=behind)
                    results.append(r)
                    lat = r["latency_ms"]
                    progress(
                        f"  batching {mode} c={level:>2}: {r['throughput_per_s']:.2f}/s "
                        f"p50 {lat.get('median', float('nan')):.0f} ms "
                        f"errors {sum(r['errors'].values())}"
                    )
            finally:
                server.stop()
    return {"front": front, "modes": modes, "levels": results, "skipped": skipped}
