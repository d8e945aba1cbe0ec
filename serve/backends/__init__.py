"""The backend registry: the one place a backend is named.

Built-in backends are listed once in `BUILTIN`; backends from other packages plug in
without editing this package, either as an entry point in the `gen3d.backends` group
(`name = "package.module:Class"`) or directly as `GEN3D_BACKEND=package.module:Class`.
Classes are imported lazily, so a backend's heavy dependencies (torch for proxy, SAM 3D's
stack for sam3d) load only when that backend is chosen. See docs/architecture.md.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from importlib import metadata

from gen3d.serve.backends.base import Backend, Sample

ENTRY_POINT_GROUP = "gen3d.backends"
# "package.module:Class": a backend given by its import path
IMPORT_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class BackendEntry:
    name: str
    target: str  # "package.module:Class"
    gpu: bool  # needs (or, for proxy, wants) a CUDA device in production
    # Samples it runs at once whatever GEN3D_MAX_BATCH_SIZE says (None: that setting).
    # Known without loading the backend, for deploy and /execution-parameters; each
    # backend's own max_batch_size agrees (tests/serve/test_execution_parameters.py).
    fixed_batch_size: int | None = None
    # The module is imported by the gunicorn master before it forks the workers: a
    # worker's first seconds otherwise go to importing torch while holding the GIL, and
    # /ping waits. Only for modules that create no CUDA context at import (ours don't).
    preload: bool = False


BUILTIN: dict[str, BackendEntry] = {
    e.name: e
    for e in (
        BackendEntry(
            "silhouette",
            "gen3d.serve.backends.silhouette:SilhouetteBackend",
            gpu=False,
            fixed_batch_size=1,
            preload=True,
        ),
        BackendEntry(
            "proxy", "gen3d.serve.backends.proxy.backend:ProxyBackend", gpu=True, preload=True
        ),
        BackendEntry(
            "sam3d",
            "gen3d.serve.backends.sam3d.adapter:Sam3DBackend",
            gpu=True,
            fixed_batch_size=1,
            preload=True,
        ),
    )
}
BUILTIN_NAMES = tuple(BUILTIN)


def plugin_entries() -> dict[str, BackendEntry]:
    """Backends other distributions register under the `gen3d.backends` entry-point group.
    Their GPU need is unknown here, so they count as CPU backends for deploy checks."""
    found = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in BUILTIN:
            found[ep.name] = BackendEntry(ep.name, ep.value, False)
    return found


def lookup(name: str) -> BackendEntry:
    """The entry for a backend name, entry-point name or `package.module:Class` path."""
    if name in BUILTIN:
        return BUILTIN[name]
    if IMPORT_PATH.match(name):
        return BackendEntry(name, name, False)
    plugins = plugin_entries()
    if name in plugins:
        return plugins[name]
    known = [*BUILTIN, *plugins]
    raise ValueError(
        f"unknown backend {name!r}; must be one of {', '.join(known)}, or package.module:Class"
    )


def batch_capacity(name: str, max_batch_size: int) -> int:
    """Samples one worker of backend `name` runs at once under GEN3D_MAX_BATCH_SIZE."""
    entry = BUILTIN.get(name)
    fixed = entry.fixed_batch_size if entry else None
    return max(1, min(max_batch_size, fixed or max_batch_size))


def is_gpu_backend(name: str) -> bool:
    return name in BUILTIN and BUILTIN[name].gpu


def create_backend(name: str) -> Backend:
    """Instantiate the backend called `name` (not yet loaded)."""
    module_name, class_name = lookup(name).target.split(":")
    backend = getattr(importlib.import_module(module_name), class_name)()
    if not isinstance(backend, Backend):
        raise TypeError(f"{name} does not implement the Backend protocol (docs/architecture.md)")
    return backend


__all__ = [
    "BUILTIN",
    "BUILTIN_NAMES",
    "Backend",
    "BackendEntry",
    "Sample",
    "batch_capacity",
    "create_backend",
    "is_gpu_backend",
    "lookup",
]
