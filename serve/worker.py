"""The gunicorn worker class: gthread, with a heartbeat that stops when the worker is wedged.

gunicorn's gthread worker notifies its master from its accept loop, which keeps running
when every request thread (or the model thread) is stuck. This one checks
gen3d.serve.liveness first and stays silent once the worker is wedged, so the master's
own timeout (MODEL_SERVER_TIMEOUT) kills and replaces it, as it would a blocked sync
worker.
"""

from __future__ import annotations

import logging

from gunicorn.workers.gthread import ThreadWorker

from gen3d.serve import liveness

log = logging.getLogger("gen3d.worker")


class Gen3DWorker(ThreadWorker):
    _reported = False

    def notify(self) -> None:
        record = liveness.current()
        why = record.wedged() if record is not None else None
        if why is None:
            super().notify()
            return
        if not self._reported:
            self._reported = True
            log.critical("worker %s is wedged (%s): heartbeat stopped for a restart", self.pid, why)
