"""gunicorn's configuration: one gthread worker per gunicorn, sized by the capacity plan.
The model loads after fork (preload_app off): a CUDA context does not survive fork."""

import atexit
import contextlib
import ctypes
import gc
import importlib
import os
import sys

from gen3d.serve.backends import lookup
from gen3d.serve.model import capacity
from gen3d.serve.observe import logging_setup, metrics
from gen3d.serve.settings import Settings, SettingsError

try:
    _settings = Settings.from_env()
    _plan = capacity.current(_settings)
except SettingsError as exc:
    print(f"gen3d: invalid setting {exc}", file=sys.stderr)
    sys.exit(2)

# The app's modules, and a built-in backend's (torch for proxy), are imported here, before
# gunicorn binds its socket and forks: a worker that imported them itself held the GIL for
# seconds while /ping waited. Nothing here creates a CUDA context (BackendEntry.preload).
importlib.import_module("gen3d.serve.http.app")
if (_backend := lookup(_settings.backend)).preload:
    importlib.import_module(_backend.target.split(":")[0])

bind = f"{_settings.bind_host}:{_settings.port}"  # the supervisor's --bind overrides it
workers = 1
worker_class = "gthread"
threads = _plan.threads
worker_connections = _plan.threads  # more would wait in the thread pool's queue, unseen
preload_app = False
timeout = _settings.server_timeout_s
# SageMaker sends SIGKILL 30 s after SIGTERM: finish in-flight requests within 25 s.
graceful_timeout = 25
keepalive = 75  # longer than SageMaker's idle connection reuse, so it never sees a reset
loglevel = _settings.log_level
accesslog = "-" if _settings.log_level == "debug" else None
errorlog = "-"
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"  # heartbeat file on tmpfs, not the container's overlay
control_socket_disable = True  # gunicorn >= 24's socket in $HOME: one per host, never used
logger_class = logging_setup.GunicornLogger  # JSON (or text) lines for gunicorn's own logs
metrics.prepare_multiprocess(_settings)  # no-op when the supervisor prepared it
atexit.register(gc.freeze)  # master and workers exit with no full collection (torch: 0.4 s)

# glibc gives each allocating thread its own malloc arena and keeps freed pages there: with
# dozens of request threads decoding images that held 3x the memory in use (16 parallel
# 4096^2 PNGs peaked at 1.0 GB with default arenas, 0.6 GB with two); MALLOC_ARENA_MAX wins.
MALLOC_ARENAS = 2
M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)


def post_fork(server: object, worker: object) -> None:
    if "MALLOC_ARENA_MAX" not in os.environ:
        with contextlib.suppress(OSError):  # not glibc: nothing to cap
            ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, MALLOC_ARENAS)


def child_exit(server: object, worker: object) -> None:
    metrics.worker_exited(worker.pid)  # type: ignore[attr-defined]
