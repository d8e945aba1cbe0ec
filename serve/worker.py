"""The gunicorn worker class: gthread, with a heartbeat that stops when the worker is wedged,
and connections taken only by workers that can serve them.

- Heartbeat: gunicorn's gthread worker notifies its master from its accept loop, which
  keeps running when every request thread (or the model thread) is stuck. This one checks
  gen3d.serve.liveness first and stays silent once the worker is wedged, so the master's
  own timeout (MODEL_SERVER_TIMEOUT) kills and replaces it, as it would a blocked sync
  worker.
- Accepting: all workers share one listening socket. A worker that is still loading (a
  replacement, or a slower one at boot), or failed, stops accepting while another worker
  is ready, so requests go to a ready one instead of being answered 503 not_ready. When
  none is ready, every worker accepts, so /ping still answers (503) at once. Readiness is
  shared through `ReadyBoard`, a byte per worker slot in memory the master made before
  forking (gen3d.serve.gunicorn_conf).
"""

from __future__ import annotations

import logging
import multiprocessing

from gunicorn.workers.gthread import ThreadWorker

from gen3d.serve import liveness

log = logging.getLogger("gen3d.worker")


class ReadyBoard:
    """Which worker slots are ready to serve: shared memory, written by each worker for its
    own slot, cleared by the master when a worker exits."""

    def __init__(self, slots: int) -> None:
        self._flags = multiprocessing.RawArray("b", max(1, slots))

    def mark(self, slot: int, ready: bool) -> None:
        if 0 <= slot < len(self._flags):
            self._flags[slot] = 1 if ready else 0

    def others_ready(self, slot: int) -> bool:
        return any(flag for i, flag in enumerate(self._flags) if i != slot)


class Gen3DWorker(ThreadWorker):
    _reported = False
    gen3d_slot = 0
    gen3d_board: ReadyBoard | None = None

    def _may_accept(self) -> bool:
        record = liveness.current()
        if record is None or self.gen3d_board is None:
            return True
        ready = record.ready()
        self.gen3d_board.mark(self.gen3d_slot, ready)
        return ready or not self.gen3d_board.others_ready(self.gen3d_slot)

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled and self._may_accept())

    def accept(self, listener: object) -> None:
        # checked again per connection: the run loop only re-checks once a second
        if not self._may_accept():
            super().set_accept_enabled(False)  # it stays in the backlog for a ready worker
            return
        super().accept(listener)

    def notify(self) -> None:
        if getattr(self, "_accepting", False) and not self._may_accept():
            super().set_accept_enabled(False)  # the run loop re-enables it when it may
        record = liveness.current()
        why = record.wedged() if record is not None else None
        if why is None:
            super().notify()
            return
        if not self._reported:
            self._reported = True
            log.critical("worker %s is wedged (%s): heartbeat stopped for a restart", self.pid, why)
