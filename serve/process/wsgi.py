"""WSGI entry point. gunicorn imports this in each worker after fork (preload_app is
off), so the model and its CUDA context are created in the worker, never the master."""

from __future__ import annotations

from gen3d.serve.http.app import create_app
from gen3d.serve.model import capacity, liveness
from gen3d.serve.model.runtime import ModelRuntime
from gen3d.serve.observe import logging_setup, metrics
from gen3d.serve.settings import Settings

settings = Settings.from_env()  # validated already by gunicorn.conf.py in the master
logging_setup.configure(settings)  # JSON lines or text (GEN3D_LOG_FORMAT)
metrics.install(metrics.Metrics(settings))  # EMF / Prometheus (GEN3D_EMF, GEN3D_PROMETHEUS)
runtime = ModelRuntime(settings, plan=capacity.current(settings))
liveness.watch(runtime.liveness)  # a wedged worker leaves; gunicorn starts another
runtime.start()
app = create_app(runtime)
