"""Model suite: in-process latency, throughput and peak memory per precision and batch.

For each precision the backend is loaded fresh (fp32/fp16/bf16 through
GEN3D_PRECISION's setting; int8 through model_opt's quantization when it is in the
tree), then each batch size is timed after warm-up (see inprocess.time_predict).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from gen3d.benchmarks import payloads, variants
from gen3d.benchmarks.backends import (
    NO_PRECISION,
    default_cache,
    default_steps,
    load_backend,
    prepare_model_dir,
    release,
    settings_for,
)
from gen3d.benchmarks.environment import fingerprint
from gen3d.benchmarks.inprocess import time_predict
from gen3d.benchmarks.results_io import Recorder
from gen3d.benchmarks.suite_config import SuiteConfig
from gen3d.serve.backends.base import Sample


@dataclass(kw_only=True)
class ModelSuiteConfig(SuiteConfig):
    backend: str = "proxy"
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    batches: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    warmup: int = 2
    repeats: int = 5
    budget_s: float = 20.0  # per (precision, batch): repeats stop early past this
    steps: int | None = None  # proxy: override both stages' step counts (GPU suite)
    deadline: float | None = None  # time.monotonic() by which the suite must be done


def _samples(config: ModelSuiteConfig) -> Callable[[int], list[Sample]]:
    options = {"steps": config.steps} if config.steps else {}

    def make(size: int) -> list[Sample]:
        return [replace(s, options=options) for s in payloads.batch(size)]

    return make


def run_model_suite(
    config: ModelSuiteConfig, out_root: Path, progress: Callable[[str], None] = print
) -> Path:
    env = fingerprint(config.device, config.instance_type)
    document_config = config.document()
    document_config["image_size"] = payloads.IMAGE_SIZE
    document_config["default_steps"] = default_steps(config.backend, config.size)
    document_config.pop("deadline")
    recorder = Recorder("model", config.name, env, document_config)
    model_dir = prepare_model_dir(config.backend, config.size, config.model_dir)
    precisions = config.precisions if config.backend != "silhouette" else [NO_PRECISION]
    if config.backend == "silhouette" and config.precisions != ["fp32"]:
        recorder.notes.append("silhouette is numpy geometry: precision does not apply")
    for precision in precisions:
        left = _left(config)
        if left is not None and left < 30:
            recorder.skip(f"{config.name} {precision}", "time budget of the suite spent")
            progress(f"  skip {precision}: time budget spent")
            continue
        reason = variants.unavailable(precision, config.backend)
        if reason:
            recorder.skip(f"{config.name} {precision}", reason)
            progress(f"  skip {precision}: {reason}")
            continue
        try:
            load_dir, load_precision = model_dir, precision
            if precision == "int8":
                variant, load_precision = variants.int8_variant(config.device)
                load_dir = variants.build_artifact(
                    model_dir, "int8", variant, config.device, default_cache()
                )
            settings = settings_for(
                config.backend, load_dir, config.device, load_precision, max(config.batches)
            )
            backend, load_s = load_backend(settings)
            variant = getattr(backend, "variant", precision)
        except Exception as exc:
            recorder.skip(f"{config.name} {precision}", f"{type(exc).__name__}: {exc}")
            progress(f"  skip {precision}: {exc}")
            continue
        per_sample_s: float | None = None
        for batch in config.batches:
            left = _left(config)
            runs = config.warmup + 2
            if left is not None and per_sample_s is not None and per_sample_s * batch * runs > left:
                why = (
                    f"time budget: needs ~{per_sample_s * batch * runs:.0f} s "
                    f"(from the smaller batch), {left:.0f} s left"
                )
                recorder.skip(f"{config.name} {precision} batch {batch}", why)
                progress(f"  skip {precision} batch {batch}: {why}")
                continue
            timing = time_predict(
                backend,
                batch,
                config.device,
                config.warmup,
                config.repeats,
                config.budget_s,
                _samples(config),
            )
            result = {
                "backend": config.backend,
                "size": config.size if config.backend == "proxy" else None,
                "precision": precision,
                "variant": variant,
                "load_s": round(load_s, 3),
                **timing.as_dict(),
            }
            recorder.add(result)
            if timing.seconds:
                per_sample_s = max(timing.seconds) / batch
            if timing.error:
                progress(f"  {config.name} {precision} batch {batch}: {timing.error}")
            else:
                per = result["per_sample_ms"]
                progress(
                    f"  {config.name} {precision} batch {batch}: "
                    f"{per['median']:.1f} ms/sample (IQR {per['iqr']:.1f}), "
                    f"{result['throughput_per_s']:.2f}/s, peak {timing.peak_memory_mb:.0f} MB"
                )
        del backend
        release()
    return recorder.write(out_root)


def _left(config: ModelSuiteConfig) -> float | None:
    return None if config.deadline is None else config.deadline - time.monotonic()
