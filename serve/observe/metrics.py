"""The container's own metrics: CloudWatch EMF lines on stdout, Prometheus at /metrics.

What is measured: per /invocations request (status, latency, queue, inference and encode
time, bytes out), per model call (batch size, out-of-memory), per worker (model state,
load and warm-up time).

- **EMF** (CloudWatch Embedded Metric Format): one JSON object per event, written whole
  to stdout through the `gen3d.emf` logger; CloudWatch Logs turns the named members into
  metrics in namespace `Gen3D`, dimensions Deployment (GEN3D_DEPLOYMENT, set by
  `gen3d deploy`) and Backend. On with GEN3D_EMF=on, or by default when GEN3D_DEPLOYMENT
  is set. Written here rather than with `aws-embedded-metrics` 3.5.0: measured, the
  library costs ~1.5x ours per line (docs/measurements.md, benchmarks/results/emf_choice.json),
  it installs aiohttp and ten more packages into the image and adds ~0.6 s of import; the
  format is one small JSON object whose specification is public.
  Spec: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
  (at most 100 metrics and 30 dimensions per object; Timestamp in epoch milliseconds).
  CloudWatch Logs extracts EMF from any log event; the `x-amzn-logs-format: json/emf`
  header is optional (CloudWatch_Embedded_Metric_Format_Generation_PutLogEvents.html),
  so the lines SageMaker ships from the container's stdout qualify.
- **Prometheus** (`prometheus_client`), GEN3D_PROMETHEUS=1, off by default (SageMaker
  only routes /ping and /invocations). With several gunicorn workers the numbers are
  summed across them through prometheus_client's multiprocess mode
  (`prepare_multiprocess` in the master, before any worker imports the client).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from gen3d.serve.errors import is_out_of_memory
from gen3d.serve.observe.logging_setup import EMF_LOGGER
from gen3d.serve.settings import Settings

NAMESPACE = "Gen3D"
MODEL_STATES = ("loading", "warming", "ready", "failed")
# CloudWatch StandardUnit values used here (EMF's Unit field takes these names).
MS, BYTES, COUNT = "Milliseconds", "Bytes", "Count"
_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


@dataclass(frozen=True)
class RequestRecord:
    """What one /invocations request did, as the request log and the metrics see it."""

    request_id: str
    status: int
    duration_ms: float
    error_code: str | None = None
    items: int = 0
    batch_size: int | None = None  # the largest model batch any of its items ran in
    queue_ms: float | None = None
    inference_ms: float | None = None
    encode_ms: float | None = None
    bytes_out: int = 0


def emf_document(
    dimensions: dict[str, str],
    metrics: list[tuple[str, float, str]],
    properties: dict[str, Any] | None = None,
    timestamp_ms: int | None = None,
) -> dict[str, Any]:
    """One EMF object: the `_aws` metadata naming each metric, then the values as members."""
    stamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    return {
        "_aws": {
            "Timestamp": stamp,
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [list(dimensions)],
                    "Metrics": [{"Name": name, "Unit": unit} for name, _, unit in metrics],
                }
            ],
        },
        **dimensions,
        **{name: value for name, value, _ in metrics},
        **(properties or {}),
    }


def emf_enabled(settings: Settings) -> bool:
    return settings.emf_metrics == "on" or (
        settings.emf_metrics == "auto" and bool(settings.deployment)
    )


class Metrics:
    """One worker's metric sinks; every method is cheap when its sink is off."""

    def __init__(self, settings: Settings, emit: Callable[[str], None] | None = None) -> None:
        self.dimensions = {
            "Deployment": settings.deployment or "local",
            "Backend": settings.backend,
        }
        self.emf = emf_enabled(settings)
        self._emit = emit or logging.getLogger(EMF_LOGGER).info
        self.prometheus = _prometheus() if settings.prometheus else None

    @classmethod
    def disabled(cls) -> Metrics:
        return cls(Settings(emf_metrics="off", prometheus=False))

    def _write(self, metrics: list[tuple[str, float, str]], properties: dict[str, Any]) -> None:
        document = emf_document(self.dimensions, metrics, properties)
        self._emit(json.dumps(document, separators=(",", ":")))

    def request(self, record: RequestRecord) -> None:
        if self.emf:
            klass = record.status // 100
            values: list[tuple[str, float, str]] = [
                ("Requests", 1, COUNT),
                ("Errors4xx", int(klass == 4), COUNT),
                ("Errors5xx", int(klass == 5), COUNT),
                ("RequestLatency", record.duration_ms, MS),
                ("BytesOut", record.bytes_out, BYTES),
            ]
            for name, value in (
                ("QueueTime", record.queue_ms),
                ("InferenceTime", record.inference_ms),
                ("EncodeTime", record.encode_ms),
            ):
                if value is not None:
                    values.append((name, value, MS))
            properties: dict[str, Any] = {"request_id": record.request_id, "status": record.status}
            if record.error_code:
                properties["error_code"] = record.error_code
            self._write(values, properties)
        if self.prometheus is not None:
            self.prometheus.request(record)

    def model_call(self, batch_size: int, seconds: float, out_of_memory: bool) -> None:
        """One backend.predict call: its batch size, and whether it ran out of memory (the
        batcher then splits a batch of more than one)."""
        if self.emf:
            self._write(
                [
                    ("BatchSize", batch_size, COUNT),
                    ("OOMSplits", int(out_of_memory and batch_size > 1), COUNT),
                    ("OutOfMemory", int(out_of_memory), COUNT),
                    ("BatchTime", round(1000 * seconds, 3), MS),
                ],
                {},
            )
        if self.prometheus is not None:
            self.prometheus.model_call(batch_size, seconds, out_of_memory)

    def model_state(self, state: str, timings: dict[str, float]) -> None:
        if self.emf:
            values: list[tuple[str, float, str]] = [("ModelReady", int(state == "ready"), COUNT)]
            values += [
                (f"Model{key.removesuffix('_s').title()}Time", round(1000 * s, 1), MS)
                for key, s in timings.items()
            ]
            self._write(values, {"model_state": state, "pid": os.getpid()})
        if self.prometheus is not None:
            self.prometheus.model_state(state)


class _Prometheus:
    """prometheus_client metrics, imported only when enabled (its import reads
    PROMETHEUS_MULTIPROC_DIR once, so it must come after `prepare_multiprocess`)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.requests = Counter(
            "gen3d_requests", "Requests to /invocations by status", ["status", "code"]
        )
        self.latency = Histogram(
            "gen3d_request_duration_seconds", "Request latency", buckets=_LATENCY_BUCKETS_S
        )
        self.stage = Histogram(
            "gen3d_stage_seconds",
            "Time in queue, inference and encoding",
            ["stage"],
            buckets=_LATENCY_BUCKETS_S,
        )
        self.bytes_out = Counter("gen3d_response_bytes", "Response bytes")
        self.batch_size = Histogram(
            "gen3d_batch_size", "Samples per model call", buckets=(1, 2, 4, 8, 16, 32, 64)
        )
        self.oom = Counter("gen3d_out_of_memory", "Model calls that ran out of memory")
        self.oom_splits = Counter("gen3d_oom_splits", "Batches split after out of memory")
        self.state = Gauge(
            "gen3d_model_state",
            "1 for the worker's model state",
            ["state"],
            multiprocess_mode="livesum",
        )

    def request(self, record: RequestRecord) -> None:
        self.requests.labels(str(record.status), record.error_code or "").inc()
        self.latency.observe(record.duration_ms / 1000)
        self.bytes_out.inc(record.bytes_out)
        for stage, ms in (
            ("queue", record.queue_ms),
            ("inference", record.inference_ms),
            ("encode", record.encode_ms),
        ):
            if ms is not None:
                self.stage.labels(stage).observe(ms / 1000)

    def model_call(self, batch_size: int, seconds: float, out_of_memory: bool) -> None:
        self.batch_size.observe(batch_size)
        if out_of_memory:
            self.oom.inc()
            if batch_size > 1:
                self.oom_splits.inc()

    def model_state(self, state: str) -> None:
        for name in MODEL_STATES:
            self.state.labels(name).set(int(name == state))


@cache
def _prometheus() -> _Prometheus:
    """One set per process: prometheus_client refuses to register a name twice."""
    return _Prometheus()


def prometheus_text() -> tuple[bytes, str]:
    """The /metrics body and its content type: this worker's registry, or every live
    worker's when prometheus_client runs in multiprocess mode."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector
    from prometheus_client.registry import CollectorRegistry

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def prepare_multiprocess(settings: Settings) -> None:
    """In gunicorn's master, before the workers fork: a fresh directory for the workers'
    metric files (a directory left by an earlier run would add its counts to ours)."""
    if settings.prometheus and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        parent = "/dev/shm" if os.path.isdir("/dev/shm") else None
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gen3d-prom-", dir=parent)


def remove_multiprocess_dir() -> None:
    """gunicorn's on_exit hook: remove the workers' metric files if we made the folder."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if os.path.basename(folder).startswith("gen3d-prom-"):
        shutil.rmtree(folder, ignore_errors=True)


def worker_exited(pid: int) -> None:
    """gunicorn's child_exit hook: drop a dead worker's live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


class ObservedBackend:
    """A backend whose predict calls are measured (batch size, time, out-of-memory); every
    other attribute is the wrapped backend's."""

    def __init__(self, backend: Any, metrics: Metrics) -> None:
        self._backend = backend
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def predict(self, batch: list[Any]) -> list[Any]:
        started = time.perf_counter()
        try:
            results = self._backend.predict(batch)
        except Exception as exc:
            self._metrics.model_call(
                len(batch), time.perf_counter() - started, is_out_of_memory(exc)
            )
            raise
        self._metrics.model_call(len(batch), time.perf_counter() - started, False)
        return results


_current = Metrics.disabled()


def install(metrics: Metrics) -> Metrics:
    """Make `metrics` this process's sink (gen3d.serve.process.wsgi, once per worker)."""
    global _current
    _current = metrics
    return metrics


def current() -> Metrics:
    return _current
