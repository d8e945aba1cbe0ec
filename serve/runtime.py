"""The model's life in one worker: load and warm up in the background, then serve.

/ping is 200 only when the backend is loaded, warmed up and its model thread is alive.
A failed load stays failed (503 with the reason in the log), never half-loaded.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable

from gen3d.serve import hardware, metrics, request_options, usdz
from gen3d.serve.automask import AutoMasker
from gen3d.serve.backends import Backend, create_backend
from gen3d.serve.batching import Batcher
from gen3d.serve.codecs import Limits
from gen3d.serve.errors import NotReady
from gen3d.serve.liveness import Liveness
from gen3d.serve.settings import Settings

log = logging.getLogger("gen3d.runtime")
LOADING_RETRY_AFTER_S = 5


def computes_on_accelerator(backend: Backend) -> bool:
    """Whether the backend's model runs on a GPU (its `device`, a torch.device, says so;
    a backend without one computes on the CPU). Decides where answers are encoded
    (gen3d.serve.batching: beside the model on an accelerator, after it on a CPU)."""
    return getattr(getattr(backend, "device", None), "type", "cpu") != "cpu"


class ModelRuntime:
    def __init__(self, settings: Settings, backend: Backend | None = None) -> None:
        self.settings = settings
        self.backend = backend or create_backend(settings.backend)
        self.batcher: Batcher | None = None
        self.state = "loading"  # loading -> warming -> ready | failed
        self.failure: str | None = None  # for the log: may name paths
        self.public_failure: str | None = None  # for clients: ArtifactError.public
        self.timings: dict[str, float] = {}
        self.auto_mask = AutoMasker()  # the artifact's segmenter replaces GrabCut at load
        self.limits = self._limits()
        self.liveness = Liveness(settings.server_timeout_s, ready=lambda: self.ready)
        self._thread = threading.Thread(target=self._bring_up, name="gen3d-load", daemon=True)

    def start(self) -> None:
        # usd-core, if installed, is imported here (0.2 s) rather than by the first request,
        # and on this thread: its libraries take the GIL while the loader lock is held, so
        # imported on the loading thread beside the main thread's imports it deadlocked.
        usdz.available()
        self._thread.start()

    @property
    def ready(self) -> bool:
        return (
            self.state == "ready"
            and self.batcher is not None
            and self.batcher.alive
            and self.liveness.wedged() is None
        )

    def _limits(self) -> Limits:
        """What decoding checks requests against; fixed once the backend is loaded."""
        return Limits(
            max_image_pixels=self.settings.max_image_pixels,
            max_batch_items=self.settings.max_batch_items,
            needs_mask=self.backend.needs_mask,
            options=self.backend.options | request_options.COMMON,
            max_side=self.settings.max_image_side,
            auto_mask=self.auto_mask,
        )

    def not_ready(self) -> NotReady:
        """What a client is told while not ready: no paths or exception text (those are in
        the log), and Retry-After only while waiting can help."""
        if self.state in ("loading", "warming"):
            return NotReady(f"the model is {self.state}", retry_after_s=LOADING_RETRY_AFTER_S)
        if self.state == "failed":
            why = f": {self.public_failure}" if self.public_failure else ""
            return NotReady(f"the model failed to load{why}; see the server log")
        if self.liveness.wedged():
            return NotReady("this worker is stuck and is being replaced")
        return NotReady("the model thread stopped; this instance is unhealthy")

    def _fit_torch_threads(self) -> Callable[[], None] | None:
        """On CPU with GEN3D_TORCH_THREADS unset: before each batch, torch gets every core
        while the other workers are idle and its share while they compute
        (gen3d.serve.hardware.cpu_threads_now)."""
        torch = sys.modules.get("torch")
        device = getattr(self.backend, "device", None)
        if torch is None or self.settings.torch_threads or getattr(device, "type", "") != "cpu":
            return None
        plan, cores = hardware.plan_workers(self.settings), hardware.cpu_cores()
        current = [0]

        def fit() -> None:
            wanted = hardware.cpu_threads_now(plan, cores)
            if wanted != current[0]:
                torch.set_num_threads(wanted)
                current[0] = wanted

        return fit

    def _bring_up(self) -> None:
        settings = self.settings
        torch = sys.modules.get("torch")  # imported by torch backends only
        if torch is not None and settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        try:
            started = time.perf_counter()
            self.backend.load(settings.model_dir, settings)
            if self.backend.needs_mask:
                self.auto_mask = AutoMasker.from_model_dir(settings.model_dir)
            self.limits = self._limits()  # the backend's options and mask maker, as loaded
            self.timings["load_s"] = time.perf_counter() - started
            log.info("loaded backend %s in %.2f s", self.backend.name, self.timings["load_s"])
            if settings.warmup:
                self.state = "warming"
                started = time.perf_counter()
                self.backend.warmup()
                self.timings["warmup_s"] = time.perf_counter() - started
                log.info("warm-up done in %.2f s", self.timings["warmup_s"])
            batcher = Batcher(
                metrics.ObservedBackend(self.backend, metrics.current()),  # batch sizes, OOM
                # the worker count is known in a server (gunicorn_conf sets it): workers
                # on shared cores share the batch size too
                max_batch_size=(
                    hardware.worker_batch_size(settings)
                    if settings.workers
                    else settings.max_batch_size
                ),
                max_delay_s=settings.max_batch_delay_ms / 1000,
                max_queue=settings.max_queue,
                max_waiting=settings.max_waiting,
                liveness=self.liveness,
                before_batch=self._fit_torch_threads(),
                finish_on_model_thread=not computes_on_accelerator(self.backend),
            )
            batcher.start()
            self.batcher = batcher
            self.state = "ready"
            metrics.current().model_state(self.state, self.timings)
            log.info(
                "ready: backend=%s max_batch_size=%d", self.backend.name, batcher.max_batch_size
            )
        except Exception as exc:
            self.state = "failed"
            self.failure = f"{type(exc).__name__}: {exc}"
            self.public_failure = getattr(exc, "public", None)
            metrics.current().model_state(self.state, self.timings)
            log.exception("model failed to load; /ping will answer 503: %s", self.failure)
        self.liveness.readiness_changed()  # outside the try: the worker's hook is not the model
