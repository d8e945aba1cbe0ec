"""The AWS-BYOC-style peer: our backend served the plain way AWS's own example does it.

AWS's "bring your own container" scikit-learn example (amazon-sagemaker-examples,
advanced_functionality/scikit_bring_your_own) serves a model with a minimal Flask app
under gunicorn's *sync* workers, one worker per core, each with its own copy of the
model: `/ping` is 200 once the model is loaded, `/invocations` decodes the body, predicts
and encodes, one request at a time per worker. No batching, no queue, no admission
control: requests beyond the workers wait in the kernel's accept queue. That is the
point of this peer: it is what a team gets without a serving layer of its own.

Requests and responses are the JSON forms the LitServe peer also speaks
({"image","mask","seed"} in; {"format","data","metadata"} out), decoded and encoded by
our own codecs, so all servers do the same work around the same model. The settings
(backend, model dir, device, precision, limits) come from the same GEN3D_* variables
our server reads. `start_byoc` runs it as a managed process on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from flask import Flask, Response, jsonify, request

from gen3d.benchmarks.backends import server_env, settings_for
from gen3d.benchmarks.suite_config import PeerSuiteConfig
from gen3d.serve import codecs
from gen3d.serve.errors import Gen3DError
from gen3d.serve.launcher import ManagedProcess, free_port
from gen3d.serve.settings import Settings

APP_FACTORY = "gen3d.benchmarks.byoc_peer:create_app()"


def create_app(settings: Settings | None = None) -> Flask:
    """The peer's WSGI app; gunicorn calls this in each worker after fork (no preload),
    so every worker loads its own model, as the AWS example does."""
    from gen3d.serve.backends import create_backend

    settings = settings or Settings.from_env()
    app = Flask("gen3d-byoc-peer")
    # Flask refuses larger bodies with a 413 before reading them: the only limit kept,
    # because without it one request could take the worker's memory.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    backend = create_backend(settings.backend)
    if settings.backend == "silhouette":  # needs no files, but the directory must exist
        settings.model_dir.mkdir(parents=True, exist_ok=True)
    backend.load(settings.model_dir, settings)
    if settings.warmup:
        backend.warmup()
    limits = codecs.Limits(
        max_image_pixels=settings.max_image_pixels,
        max_batch_items=settings.max_batch_items,
        needs_mask=backend.needs_mask,
        options=backend.options,
    )

    @app.get("/ping")
    def ping() -> Response:
        # The AWS example's health check is "the model is loaded". Here the model is
        # loaded before the app exists, so a worker that answers at all has it: 200.
        return Response(status=200)

    @app.post("/invocations")
    def invocations() -> Response | tuple[Response, int]:
        try:
            decoded = codecs.decode_json(
                request.get_data(), codecs.Defaults(seed=0, format=None), limits
            )
            item = decoded.items[0]
            if isinstance(item, Gen3DError):
                raise item
            result = backend.predict([item])[0]
            if isinstance(result, BaseException):
                raise result
            return jsonify(codecs.asset_json(result, "glb"))
        except Gen3DError as exc:
            return jsonify(exc.to_dict()), exc.status

    return app


def byoc_command(port: int, workers: int, timeout_s: int = 120) -> list[str]:
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
        f"127.0.0.1:{port}",  # loopback only: benchmarks never open a port to the network
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


def start_byoc(config: PeerSuiteConfig, model_dir: Path, log_path: Path) -> ManagedProcess:
    """The BYOC peer as a managed process (its own session, /ping), not yet ready."""
    port = free_port()
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
    return ManagedProcess(
        byoc_command(port, byoc_workers(config)), port, log_path, env=env, name="BYOC peer"
    )
