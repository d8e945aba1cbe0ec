"""The AWS-BYOC-style peer: our backend served the plain way AWS's own example does it.

AWS's "bring your own container" scikit-learn example (amazon-sagemaker-examples,
advanced_functionality/scikit_bring_your_own) serves a model with a minimal Flask app
under gunicorn's *sync* workers, one worker per core, each with its own copy of the
model, behind nginx on a unix socket (the example's nginx.conf and `serve` script):
`/ping` is 200 once the model is loaded, `/invocations` decodes the body, predicts and
encodes, one request at a time per worker. No batching, no queue, no admission control:
requests beyond the workers wait in the socket's accept queue. That is the point of this
peer: it is what a team gets without a serving layer of its own (about 60 lines). Without
nginx installed it runs gunicorn alone on TCP, and the suite records which.

Requests and responses are the JSON forms the LitServe peer also speaks
({"image","mask","seed"} in; {"format","data","metadata"} out), decoded and encoded by
our own codecs, so all servers do the same work around the same model. The settings
(backend, model dir, device, precision, limits) come from the same GEN3D_* variables
our server reads. `start_byoc` runs it as a managed process on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request

from gen3d.benchmarks.backends import server_env, settings_for
from gen3d.benchmarks.suite_config import PeerSuiteConfig
from gen3d.serve.errors import Gen3DError
from gen3d.serve.http import codecs
from gen3d.serve.local_server import ManagedProcess, free_port
from gen3d.serve.settings import Settings

APP_FACTORY = "gen3d.benchmarks.byoc_peer:create_app()"


class RequestWork:
    """One request's work without the server: decode the JSON body, predict, encode the
    JSON answer. The peer's handler, and the peers suite's in-process ceiling
    (gen3d.benchmarks.ceiling), which runs it with no server at all."""

    def __init__(self, settings: Settings) -> None:
        from gen3d.serve.backends import create_backend

        self.backend = create_backend(settings.backend)
        if settings.backend == "silhouette":  # needs no files, but the directory must exist
            settings.model_dir.mkdir(parents=True, exist_ok=True)
        self.backend.load(settings.model_dir, settings)
        if settings.warmup:
            self.backend.warmup()
        self.limits = codecs.Limits(
            max_image_pixels=settings.max_image_pixels,
            max_batch_items=settings.max_batch_items,
            needs_mask=self.backend.needs_mask,
            options=self.backend.options,
        )

    def __call__(self, body: bytes) -> dict[str, Any]:
        """The answer's JSON document; a client error raises its Gen3DError."""
        decoded = codecs.decode_json(body, codecs.Defaults(seed=0, format=None), self.limits)
        item = decoded.items[0]
        if isinstance(item, Gen3DError):
            raise item
        result = self.backend.predict([item])[0]
        if isinstance(result, BaseException):
            raise result
        return codecs.asset_json(result, "glb")


def create_app(settings: Settings | None = None) -> Flask:
    """The peer's WSGI app; gunicorn calls this in each worker after fork (no preload),
    so every worker loads its own model, as the AWS example does."""
    settings = settings or Settings.from_env()
    app = Flask("gen3d-byoc-peer")
    # Flask refuses larger bodies with a 413 before reading them: the only limit kept,
    # because without it one request could take the worker's memory.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    work = RequestWork(settings)

    @app.get("/ping")
    def ping() -> Response:
        # The AWS example's health check is "the model is loaded". Here the model is
        # loaded before the app exists, so a worker that answers at all has it: 200.
        return Response(status=200)

    @app.post("/invocations")
    def invocations() -> Response | tuple[Response, int]:
        try:
            return jsonify(work(request.get_data()))
        except Gen3DError as exc:
            return jsonify(exc.to_dict()), exc.status

    return app


# The example's nginx.conf, in its essentials: one worker process, the app on a unix
# socket, only /ping and /invocations passed on.
NGINX_CONF = """daemon off;
worker_processes 1;
pid {run}/nginx.pid;
error_log stderr error;
events {{ worker_connections 2048; }}
http {{
    access_log off;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    upstream gunicorn {{ server unix:{run}/gunicorn.sock; }}
    server {{
        listen 127.0.0.1:{port} deferred backlog=4096;
        client_max_body_size 6m;
        keepalive_timeout 75s;
        location ~ ^/(ping|invocations) {{
            proxy_set_header Host $http_host;
            proxy_redirect off;
            proxy_read_timeout 120s;
            proxy_pass http://gunicorn;
        }}
        location / {{ return 404; }}
    }}
}}
"""


def byoc_command(port: int, workers: int, timeout_s: int = 120) -> list[str]:
    """The peer as a process: nginx in front of gunicorn's sync workers when nginx is
    installed (the example's `serve` script), else gunicorn alone on 127.0.0.1."""
    if shutil.which("nginx") or Path("/usr/sbin/nginx").is_file():
        return [sys.executable, "-m", "gen3d.benchmarks.byoc_peer", str(port), str(workers)]
    return gunicorn_command(f"127.0.0.1:{port}", workers, timeout_s)


def gunicorn_command(bind: str, workers: int, timeout_s: int = 120) -> list[str]:
    """gunicorn as the AWS example's `serve` script runs it: sync workers, no preload."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--worker-class",
        "sync",
        "--workers",
        str(workers),
        "--bind",
        bind,  # a unix socket, or loopback only: benchmarks never open a port to the network
        "--timeout",
        str(timeout_s),
        # gunicorn >= 24 opens a control socket in $HOME; several servers on one host
        # (ours, the peers, tests) would contend for it
        "--no-control-socket",
        "--log-level",
        "warning",
        APP_FACTORY,
    ]


def byoc_workers(config: PeerSuiteConfig) -> int:
    """The configured worker count, else one per core (the AWS example's default)."""
    return config.byoc_workers or os.cpu_count() or 1


def byoc_env(config: PeerSuiteConfig, model_dir: Path) -> dict[str, str]:
    """The environment of the peer's workers (and of the in-process ceiling's children)."""
    settings = settings_for(
        config.backend,
        model_dir,
        config.device,
        config.precision,
        1,  # never batches: recorded as such in the settings it reads
        max_batch_delay_ms=config.max_batch_delay_ms,
    )
    env = server_env(settings)
    if config.torch_threads:
        env["OMP_NUM_THREADS"] = str(config.torch_threads)
    return env


def start_byoc(config: PeerSuiteConfig, model_dir: Path, log_path: Path) -> ManagedProcess:
    """The BYOC peer as a managed process (its own session, /ping), not yet ready."""
    port = free_port()
    env = byoc_env(config, model_dir)
    return ManagedProcess(
        byoc_command(port, byoc_workers(config)), port, log_path, env=env, name="BYOC peer"
    )


def has_front() -> bool:
    """Whether the peer runs behind nginx on this machine (recorded with the results)."""
    return byoc_command(0, 1)[2] == "gen3d.benchmarks.byoc_peer"


def serve(port: int, workers: int) -> int:
    """The example's `serve` script: start gunicorn on a unix socket and nginx in front,
    stop both when either exits or on SIGTERM."""
    run = Path(tempfile.mkdtemp(prefix="gen3d-byoc-"))
    run.chmod(0o755)  # nginx's worker drops root: it must reach the socket
    (run / "nginx.conf").write_text(NGINX_CONF.format(run=run, port=port))
    gunicorn = subprocess.Popen(gunicorn_command(f"unix:{run}/gunicorn.sock", workers))
    while not (run / "gunicorn.sock").exists() and gunicorn.poll() is None:
        time.sleep(0.02)
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    nginx = subprocess.Popen([nginx_bin, "-p", f"{run}/", "-c", str(run / "nginx.conf")])
    children = (gunicorn, nginx)

    def stop(_signum: int = 0, _frame: object = None) -> None:
        for child in children:
            if child.poll() is None:
                child.terminate()

    signal.signal(signal.SIGTERM, stop)
    while all(child.poll() is None for child in children):
        time.sleep(0.1)
    stop()
    for child in children:
        child.wait()
    shutil.rmtree(run, ignore_errors=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the BYOC peer: nginx + gunicorn sync workers")
    parser.add_argument("port", type=int)
    parser.add_argument("workers", type=int)
    args = parser.parse_args()
    sys.exit(serve(args.port, args.workers))
