"""Is this worker still doing its job? The answer gates gunicorn's heartbeat.

gunicorn kills a worker that stops notifying for `timeout` seconds, but a gthread
worker's main loop notifies whether or not its request threads and model thread move:
a worker whose threads are all stuck looks alive forever. Here each request records when
it started and the model thread records when its batch started; anything older than
MODEL_SERVER_TIMEOUT means the worker is wedged (a request's deadline is shorter). Then
/ping answers 503 and gen3d.serve.worker stops the heartbeat, so gunicorn's master
replaces the worker within another MODEL_SERVER_TIMEOUT.

`ready` also tells gen3d.serve.worker whether to take connections: a worker still loading
(or failed, or wedged) leaves them to the workers that are ready, if any are.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Liveness:
    def __init__(self, limit_s: float, ready: Callable[[], bool] = lambda: True) -> None:
        self.limit_s = limit_s
        self.ready = ready  # the runtime's: loaded, warmed up, model thread alive, not wedged
        self._requests: dict[int, float] = {}  # thread id -> when its request started
        self._batch_started: float | None = None
        self._lock = threading.Lock()

    def request_started(self) -> None:
        with self._lock:
            self._requests[threading.get_ident()] = time.monotonic()

    def request_finished(self) -> None:
        with self._lock:
            self._requests.pop(threading.get_ident(), None)

    def request_past_model(self) -> None:
        """This thread's request needs the model no more (its answer is computed): the
        worker stops counting it as load when choosing who takes the next request."""
        _past_model()

    def readiness_changed(self) -> None:
        """The model just became ready (or failed to load): the worker publishes it now,
        so requests reach it (or stop being left to it) without waiting for any worker's
        loop to turn."""
        _readiness()

    def batch_started(self) -> None:
        self._batch_started = time.monotonic()
        _activity(True)

    def batch_finished(self) -> None:
        self._batch_started = None
        _activity(False)

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


_current: Liveness | None = None
# Told when this worker's model starts and stops computing (gen3d.serve.worker shares it
# with the other workers, which size their torch thread pools by it).
_activity: Callable[[bool], None] = lambda computing: None  # noqa: E731


# Told on a request thread when its request is past the model (gen3d.serve.worker).
_past_model: Callable[[], None] = lambda: None  # noqa: E731


# Told on the loading thread when the model is ready or failed (gen3d.serve.worker).
_readiness: Callable[[], None] = lambda: None  # noqa: E731


def on_readiness(hook: Callable[[], None]) -> None:
    global _readiness
    _readiness = hook


def on_activity(hook: Callable[[bool], None]) -> None:
    global _activity
    _activity = hook


def on_past_model(hook: Callable[[], None]) -> None:
    global _past_model
    _past_model = hook


def install(record: Liveness) -> Liveness:
    """Make `record` this worker's (one per process, like the metrics registry)."""
    global _current
    _current = record
    return record


def current() -> Liveness | None:
    return _current
