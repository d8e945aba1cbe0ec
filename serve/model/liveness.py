"""Is this worker still doing its job? If not, it leaves and gunicorn starts another.

A gthread worker's heartbeat comes from its main loop, so a worker whose request or model
threads are stuck looks alive forever. A request or batch older than MODEL_SERVER_TIMEOUT
means wedged: /ping answers 503, and WEDGED_GRACE_S later the watchdog ends the process.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger("gen3d.liveness")
# /ping reports the wedge this long before the worker goes (health checks see why)
WEDGED_GRACE_S = 2.0
WEDGED_EXIT_CODE = 70  # EX_SOFTWARE; not 3 or 4, which make gunicorn's master halt


class Liveness:
    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self._requests: dict[int, float] = {}  # thread id -> when its request started
        self._batch_started: float | None = None
        self._lock = threading.Lock()

    def request_started(self) -> None:
        with self._lock:
            self._requests[threading.get_ident()] = time.monotonic()

    def request_finished(self) -> None:
        with self._lock:
            self._requests.pop(threading.get_ident(), None)

    def batch_started(self) -> None:
        self._batch_started = time.monotonic()

    def batch_finished(self) -> None:
        self._batch_started = None

    def wedged(self, now: float | None = None) -> str | None:
        """Why this worker is stuck, or None."""
        now = time.monotonic() if now is None else now
        batch = self._batch_started
        if batch is not None and now - batch > self.limit_s:
            return f"the model has run one batch for {now - batch:.0f} s"
        with self._lock:
            oldest = min(self._requests.values(), default=None)
        if oldest is not None and now - oldest > self.limit_s:
            return f"a request has held its thread for {now - oldest:.0f} s"
        return None


def watch(
    liveness: Liveness,
    leave: Callable[[], None] = lambda: os._exit(WEDGED_EXIT_CODE),
    every_s: float = 0.5,
) -> threading.Thread:
    """Start a daemon thread that calls `leave` once the worker has been wedged for
    WEDGED_GRACE_S (the threads that are stuck cannot be stopped; the process can)."""

    def run() -> None:
        while True:
            why = liveness.wedged()
            if why is not None:
                log.critical("worker %s is wedged (%s): leaving to be replaced", os.getpid(), why)
                time.sleep(WEDGED_GRACE_S)
                leave()
                return
            time.sleep(every_s)

    thread = threading.Thread(target=run, name="gen3d-watchdog", daemon=True)
    thread.start()
    return thread
