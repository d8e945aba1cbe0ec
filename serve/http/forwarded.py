"""What our front tells a worker about a request: when nginx handed it on.

The front (gen3d.serve.process.front) stamps every proxied request with its clock; a worker behind
it (the supervisor sets BEHIND_FRONT_ENV) counts the time since against the request's
deadline. Without the front the header is a client's own and means nothing.
"""

from __future__ import annotations

import math
import os

BEHIND_FRONT_ENV = "GEN3D_BEHIND_FRONT"  # set by gen3d.serve.process.supervisor for each gunicorn
# nginx's clock ($msec) when it handed the request on: the time since is the time it
# waited in gunicorn's backlog for a worker, and counts against the request's deadline
FORWARDED_AT_HEADER = "X-Gen3D-Forwarded-At"


def backlog_wait_s(forwarded_at: str | None, behind_front: bool, now: float) -> float:
    """Seconds a request waited between the front and a worker (`now`: time.time()):
    0 when not behind our front (a client's own header means nothing) or unreadable."""
    if not behind_front or not forwarded_at:
        return 0.0
    try:
        waited = now - float(forwarded_at)
    except ValueError:
        return 0.0
    return waited if math.isfinite(waited) and waited > 0 else 0.0


def behind_front() -> bool:
    """Whether this process serves behind our nginx (the supervisor binds it to a socket)."""
    return os.environ.get(BEHIND_FRONT_ENV) == "1"
