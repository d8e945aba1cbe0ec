"""WSGI entry point. gunicorn imports this in each worker after fork (preload_app is
off), so the model and its CUDA context are created in the worker, never the master."""

from __future__ import annotations

import logging

from gen3d.serve.app import create_app
from gen3d.serve.runtime import ModelRuntime
from gen3d.serve.settings import Settings

settings = Settings.from_env()  # validated already by gunicorn.conf.py in the master
logging.basicConfig(
    level=settings.log_level.upper(),
    format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
)
runtime = ModelRuntime(settings)
runtime.start()
app = create_app(runtime)
