"""gunicorn configuration for the image and for local runs (values from gen3d.serve.settings).

gthread workers (gen3d.serve.worker: a heartbeat that stops when the worker is wedged):
request threads wait on the worker's batcher while one model thread computes. The app is
not preloaded: each worker loads the model after fork, because a CUDA context does not
survive fork. Worker count, torch threads and each worker's GPU come from
gen3d.serve.hardware. Behind the front (gen3d.serve.supervisor) gunicorn binds a unix
socket given on the command line, which overrides `bind` here.
"""

import ctypes
import importlib
import os
import sys

from gen3d.serve import logging_setup, metrics
from gen3d.serve.backends import lookup
from gen3d.serve.front import invocations_in_flight
from gen3d.serve.hardware import plan_workers, worker_batch_size
from gen3d.serve.settings import PING_HEADROOM, Settings, SettingsError
from gen3d.serve.worker import LOOKAHEAD_BATCHES, WorkerBoard

try:
    _settings = Settings.from_env()
except SettingsError as exc:
    print(f"gen3d: invalid setting {exc}", file=sys.stderr)
    sys.exit(2)

# A built-in backend's module (and so torch) is imported once here, before the fork (see
# BackendEntry.preload); a plugin backend is only imported in the workers.
_backend = lookup(_settings.backend)
if _backend.preload:
    importlib.import_module(_backend.target.split(":")[0])

_plan = plan_workers(_settings)
# The workers read the resolved count (GET /execution-parameters reports it).
os.environ["MODEL_SERVER_WORKERS"] = str(_plan.workers)
if "SAGEMAKER_MODEL_SERVER_WORKERS" in os.environ:
    os.environ["SAGEMAKER_MODEL_SERVER_WORKERS"] = str(_plan.workers)

bind = f"{_settings.bind_host}:{_settings.port}"
workers = _plan.workers
worker_class = "gen3d.serve.worker.Gen3DWorker"
threads = _settings.threads
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
# gunicorn >= 24 opens a control socket in $HOME; several servers on one host (tests,
# benchmarks) would contend for it and the image never uses it.
control_socket_disable = True
# JSON (or text) lines for gunicorn's own loggers too; Prometheus' per-worker files.
logger_class = logging_setup.GunicornLogger
metrics.prepare_multiprocess(_settings)


# glibc gives every thread that allocates its own malloc arena and keeps freed pages there;
# with dozens of request threads decoding images that held 3x the memory in use (16
# parallel 4096^2 PNGs peaked at 1.0 GB with the default arenas, 0.6 GB with two). Set in
# each worker before its threads start, so every way of starting the server gets it; an
# explicit MALLOC_ARENA_MAX in the environment wins.
MALLOC_ARENAS = 2
M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)


def when_ready(server: object) -> None:
    server.log.info(  # type: ignore[attr-defined]
        "gen3d: %d worker(s) (%s), torch threads %s, %d request threads each",
        _plan.workers,
        _plan.reason,
        _plan.torch_threads or "default",
        _settings.threads,
    )


# each worker slot's readiness and load (gen3d.serve.worker): made here, before any fork
_board = WorkerBoard(_plan.workers + 1)
# Workers that share the CPU's cores fill one batch (their share of the batch size) before
# the next worker takes any (gen3d.serve.worker); workers with a GPU each take their share
# of the requests (least loaded first).
_pack = 0 if _plan.on_gpu else worker_batch_size(_settings, _plan)
# Behind the front a worker holds one batch computing and the next gathering; the rest wait
# in the socket's backlog for whichever worker frees first (gen3d.serve.worker), so the
# backlog must hold every request nginx lets through (the kernel caps it at somaxconn).
_lookahead = LOOKAHEAD_BATCHES * worker_batch_size(_settings, _plan)
backlog = max(2048, invocations_in_flight(_settings, _plan.workers) + PING_HEADROOM)


def pre_fork(server: object, worker: object) -> None:
    """Give the new worker the lowest slot no live worker holds (its GPU, if pinned)."""
    taken = {getattr(w, "gen3d_slot", None) for w in server.WORKERS.values()}  # type: ignore[attr-defined]
    worker.gen3d_slot = next(i for i in range(len(taken) + 1) if i not in taken)  # type: ignore[attr-defined]
    worker.gen3d_board = _board  # type: ignore[attr-defined]
    worker.gen3d_pack = _pack  # type: ignore[attr-defined]
    worker.gen3d_lookahead = _lookahead  # type: ignore[attr-defined]


def post_fork(server: object, worker: object) -> None:
    slot = getattr(worker, "gen3d_slot", 0)
    if _plan.gpus:  # before anything in the worker touches CUDA
        os.environ["CUDA_VISIBLE_DEVICES"] = _plan.gpus[slot % len(_plan.gpus)]
    if "MALLOC_ARENA_MAX" not in os.environ:
        try:
            ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, MALLOC_ARENAS)
        except OSError:  # not glibc: nothing to cap
            pass


def child_exit(server: object, worker: object) -> None:
    _board.mark(getattr(worker, "gen3d_slot", -1), False)
    metrics.worker_exited(worker.pid)  # type: ignore[attr-defined]


def on_exit(server: object) -> None:
    metrics.remove_multiprocess_dir()
