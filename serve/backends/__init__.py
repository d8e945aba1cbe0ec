"""Backend registry: name -> class, imported lazily so a backend's heavy dependencies
(torch for proxy, SAM 3D's stack for sam3d) load only when that backend is chosen."""

from __future__ import annotations

import importlib

from serve.backends.base import Backend, Sample

_REGISTRY = {
    "silhouette": "serve.backends.silhouette:SilhouetteBackend",
    "proxy": "serve.backends.proxy:ProxyBackend",
    "sam3d": "serve.backends.sam3d:Sam3DBackend",
}

GPU_BACKENDS = frozenset({"proxy", "sam3d"})  # need (proxy: want) a CUDA device in production


def backend_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def create_backend(name: str) -> Backend:
    """Instantiate the backend called `name` (not yet loaded)."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(_REGISTRY)}") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)()


__all__ = ["GPU_BACKENDS", "Backend", "Sample", "backend_names", "create_backend"]
