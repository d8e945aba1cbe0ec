"""Server suite: the real gunicorn server on 127.0.0.1 under closed-loop load.

In the same run, the same backend is first timed in-process (batch 1, 2, 4, ... up to
the batch size the server may form); serving efficiency at concurrency c is served
throughput / in-process throughput at batch min(c, that batch size) - the best the
server could do with the batches it is allowed to form.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gen3d.benchmarks import payloads
from gen3d.benchmarks.backends import (
    default_steps,
    load_backend,
    prepare_model_dir,
    release,
    server_env,
    settings_for,
)
from gen3d.benchmarks.environment import fingerprint
from gen3d.benchmarks.inprocess import peak_rss_mb, time_predict
from gen3d.benchmarks.loadgen import Target, run_load
from gen3d.benchmarks.results_io import Recorder
from gen3d.benchmarks.stats import summarize
from gen3d.benchmarks.suite_config import ServedSuiteConfig
from gen3d.serve.http import codecs
from gen3d.serve.local_server import ManagedProcess, gunicorn_workers, start_server

LEVELS = [1, 2, 4, 8, 16, 32]


@dataclass(kw_only=True)
class ServerSuiteConfig(ServedSuiteConfig):
    levels: list[int] = field(default_factory=lambda: list(LEVELS))
    batching: list[str] = field(default_factory=lambda: ["on"])  # "on" and/or "off"
    duration_s: float = 6.0
    max_requests: int = 400
    ping_interval_s: float = 0.02
    inprocess_repeats: int = 5
    steps: int | None = None
    server_warmup: bool = True  # GEN3D_WARMUP of the server (off for proxy full: minutes)

    @property
    def name(self) -> str:
        base = super().name
        return base if self.precision in ("fp32", "n/a") else f"{base}-{self.precision}"


def in_process_reference(
    settings: Any,
    device: str,
    repeats: int,
    steps: int | None,
    levels: list[int],
    batching: list[str],
    threads: int | None = None,
) -> dict[str, Any]:
    """Throughput of backend.predict at each batch the levels need, plus codec cost."""
    if not threads:
        return _reference(settings, device, repeats, steps, levels, batching)
    import torch

    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _reference(settings, device, repeats, steps, levels, batching)
    finally:
        torch.set_num_threads(saved_threads)


def _reference(
    settings: Any,
    device: str,
    repeats: int,
    steps: int | None,
    levels: list[int],
    batching: list[str],
) -> dict[str, Any]:
    from dataclasses import replace

    backend, load_s = load_backend(settings)
    limit = backend.max_batch_size
    needed = {min(level, limit) for level in levels} if "on" in batching else set()
    if "off" in batching:
        needed.add(1)
    options = {"steps": steps} if steps else {}

    def samples(n: int) -> list[Any]:
        return [replace(s, options=options) for s in payloads.batch(n)]

    by_batch: dict[str, Any] = {}
    for batch in sorted(needed):
        timing = time_predict(
            backend, batch, device, warmup=2, repeats=repeats, budget_s=20.0, samples=samples
        )
        by_batch[str(batch)] = timing.as_dict()
    # What the server adds per request besides the model: decode the PNG, encode the GLB.
    body, limits = payloads.rgba_png(), _limits(backend)
    decode_s, encode_s = [], []
    asset = backend.predict(samples(1))[0]
    for _ in range(5):
        t0 = time.perf_counter()
        codecs.decode_image_body(body, codecs.Defaults(seed=0, format=None), limits)
        t1 = time.perf_counter()
        codecs.encode_item(asset, "glb")  # type: ignore[arg-type]
        t2 = time.perf_counter()
        decode_s.append(t1 - t0)
        encode_s.append(t2 - t1)
    del backend, asset
    release()
    return {
        "load_s": round(load_s, 3),
        "max_batch_size": limit,
        "by_batch": by_batch,
        "decode_request_ms": summarize([s * 1000 for s in decode_s]),
        "encode_glb_ms": summarize([s * 1000 for s in encode_s]),
    }


def _limits(backend: Any) -> codecs.Limits:
    return codecs.Limits(
        max_image_pixels=4096 * 4096,
        max_batch_items=16,
        needs_mask=backend.needs_mask,
        options=backend.options,
    )


def reference_throughput(reference: dict[str, Any], concurrency: int, batching: bool) -> float:
    """In-process throughput at the batch the server could form at this concurrency."""
    limit = reference["max_batch_size"] if batching else 1
    target = min(concurrency, limit)
    candidates = [
        int(b)
        for b, t in reference["by_batch"].items()
        if int(b) <= target and "throughput_per_s" in t
    ]
    if not candidates:
        return float("nan")
    return reference["by_batch"][str(max(candidates))]["throughput_per_s"]


def server_target(server: ManagedProcess, steps: int | None = None) -> Target:
    """The production request: an RGBA PNG in, a GLB out (JSON when options are needed)."""
    if steps:
        return Target(
            server.url,
            "/invocations",
            payloads.json_body(options={"steps": steps}),
            {"Content-Type": "application/json", "Accept": "model/gltf-binary"},
        )
    return Target(
        server.url,
        "/invocations",
        payloads.rgba_png(),
        {"Content-Type": "image/png", "Accept": "model/gltf-binary"},
    )


def run_server_suite(
    config: ServerSuiteConfig, out_root: Path, progress: Callable[[str], None] = print
) -> Path:
    env = fingerprint(config.device, config.instance_type)
    doc_config = config.document()
    doc_config["image_size"] = payloads.IMAGE_SIZE
    doc_config["default_steps"] = default_steps(config.backend, config.size)
    recorder = Recorder("server", config.name, env, doc_config)
    model_dir = prepare_model_dir(config.backend, config.size, config.model_dir)
    settings = config.settings(model_dir)
    progress(f"  in-process reference for {config.name}")
    reference = in_process_reference(
        settings,
        config.device,
        config.inprocess_repeats,
        config.steps,
        config.levels,
        config.batching,
        config.torch_threads,
    )
    recorder.config["in_process_reference"] = reference
    with tempfile.TemporaryDirectory(prefix="gen3d-bench-") as tmp:
        for mode in config.batching:
            batching = mode == "on"
            server_settings = settings_for(
                config.backend,
                model_dir,
                config.device,
                config.precision,
                config.max_batch_size if batching else 1,
                max_batch_delay_ms=config.max_batch_delay_ms,
                max_queue=max(64, 2 * max(config.levels)),
            )
            launch_env = server_env(server_settings)
            if config.torch_threads:
                launch_env["OMP_NUM_THREADS"] = str(config.torch_threads)
            if not config.server_warmup:
                launch_env["GEN3D_WARMUP"] = "0"
                recorder.notes.append(
                    "server started with GEN3D_WARMUP=0; the load's own "
                    "warm-up phase absorbs first-call costs"
                )
            server = start_server(launch_env, log_path=Path(tmp) / f"server-{mode}.log")
            try:
                ready_s = server.wait_ready(config.ready_timeout_s)
                progress(f"  server ({config.name}, batching {mode}) ready in {ready_s:.1f} s")
                target = server_target(server, config.steps)
                for level in config.levels:
                    result = run_load(
                        target,
                        level,
                        config.duration_s,
                        config.max_requests,
                        config.warmup_s,
                        config.ping_interval_s,
                    )
                    reference_rate = reference_throughput(reference, level, batching)
                    served = result["throughput_per_s"] or 0.0
                    result.update(
                        backend=config.backend,
                        batching=mode,
                        max_batch_size=server_settings.max_batch_size,
                        effective_max_batch_size=min(
                            server_settings.max_batch_size, reference["max_batch_size"]
                        ),
                        in_process_per_s=reference_rate,
                        serving_efficiency=served / reference_rate if reference_rate else None,
                    )
                    recorder.add(result)
                    progress(_line(config.name, mode, result))
                pids = gunicorn_workers(server)  # the master's children, behind nginx
                recorder.config[f"server_peak_rss_mb_batching_{mode}"] = (
                    max((peak_rss_mb(p) or 0.0) for p in pids) if pids else None
                )
            finally:
                server.stop()
    return recorder.write(out_root)


def _line(name: str, mode: str, r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    ping = r.get("ping_ms", {})
    eff = r.get("serving_efficiency")
    return (
        f"  {name} batching {mode} c={r['concurrency']:>2}: {r['throughput_per_s']:.2f}/s "
        f"p50 {lat.get('median', float('nan')):.0f} ms p99 {lat.get('p99', float('nan')):.0f} ms"
        f" errors {sum(r['errors'].values())} eff {eff if eff is None else round(eff, 2)}"
        f" ping p99 {ping.get('p99', float('nan')):.1f} ms"
    )
