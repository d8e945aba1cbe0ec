"""The model's life in one worker: load and warm up in the background, then serve.

/ping is 200 only when the backend is loaded, warmed up and its model thread is alive.
A failed load stays failed (503 with the reason in the log), never half-loaded.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

from gen3d.serve.backends import Backend, create_backend
from gen3d.serve.errors import NotReady
from gen3d.serve.model.automask import AutoMasker
from gen3d.serve.model.batching import Batcher
from gen3d.serve.model.capacity import CapacityPlan
from gen3d.serve.model.capacity import plan as capacity_plan
from gen3d.serve.model.liveness import Liveness
from gen3d.serve.observe import metrics
from gen3d.serve.outputs import usdz
from gen3d.serve.settings import Settings

log = logging.getLogger("gen3d.runtime")
LOADING_RETRY_AFTER_S = 5


def computes_on_accelerator(backend: Backend) -> bool:
    """Whether the backend's model runs on a GPU (its `device`, a torch.device, says so;
    a backend without one computes on the CPU). Decides where answers are encoded
    (gen3d.serve.model.batching: beside the model on an accelerator, after it on a CPU)."""
    return getattr(getattr(backend, "device", None), "type", "cpu") != "cpu"


class ModelRuntime:
    def __init__(
        self, settings: Settings, backend: Backend | None = None, plan: CapacityPlan | None = None
    ) -> None:
        self.settings = settings
        self.plan = plan or capacity_plan(settings)
        self.backend = backend or create_backend(settings.backend)
        self.batcher: Batcher | None = None
        self.state = "loading"  # loading -> warming -> ready | failed
        self.failure: str | None = None  # for the log: may name paths
        self.public_failure: str | None = None  # for clients: ArtifactError.public
        self.timings: dict[str, float] = {}
        self.auto_mask = AutoMasker()  # the artifact's segmenter replaces GrabCut at load
        self.liveness = Liveness(settings.server_timeout_s)
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

    def _bring_up(self) -> None:
        settings = self.settings
        torch = sys.modules.get("torch")  # imported by torch backends only
        if torch is not None and self.plan.torch_threads:  # the worker's share of the cores
            torch.set_num_threads(self.plan.torch_threads)
        try:
            started = time.perf_counter()
            self.backend.load(settings.model_dir, settings)
            if self.backend.needs_mask:
                self.auto_mask = AutoMasker.from_model_dir(settings.model_dir)
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
                max_batch_size=self.plan.batch_size,
                max_delay_s=settings.max_batch_delay_ms / 1000,
                max_queue=settings.max_queue,
                max_waiting=settings.max_waiting,
                liveness=self.liveness,
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
