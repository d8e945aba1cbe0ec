"""Every environment variable the server reads, parsed once into one frozen object.

An invalid value stops start-up with one line that names the variable (SettingsError).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "text")  # observability (issue 17): gen3d.serve.observe.logging_setup
EMF_MODES = ("auto", "on", "off")  # auto: on when GEN3D_DEPLOYMENT is set (gen3d deploy sets it)
# auto: nginx when its binary is on PATH (gen3d.serve.process.front)
FRONTS = ("auto", "nginx", "none")


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    backend: str = "silhouette"
    model_dir: Path = Path("/opt/ml/model")
    port: int = 8080
    device: str = "auto"
    precision: str = "auto"
    max_batch_size: int = 8
    max_batch_delay_ms: float = 10.0
    max_queue: int = 32
    # Requests per worker that wait, body unread, for a queue slot (no CPU, no decoded
    # memory) up to admission_wait_s before a 503: clients that retry at once then cost
    # nothing (at 12x the queue, goodput halved without it).
    max_waiting: int = 32
    admission_wait_s: float = 5.0
    request_timeout_s: float = 55.0
    max_body_mb: float = 6.0
    max_image_pixels: int = 4096 * 4096
    allow_unverified_model: bool = False  # load a model dir without (or beyond) its manifest
    max_image_side: int = 2048  # larger photos and masks are reduced while decoding; 0: never
    decode_concurrency: int = 2  # bodies decoded at once per worker (bounds peak memory)
    max_batch_items: int = 16
    warmup: bool = True
    workers: int = 0  # 0: from the hardware (gen3d.serve.model.capacity.plan)
    worker_threads: int = 0  # 0: derived from the batch, max_queue and max_waiting (capacity)
    server_timeout_s: int = 120
    log_level: str = "info"
    stage_offload: bool = False
    torch_threads: int = 0  # 0: torch's default (one per core)
    bind_host: str = "0.0.0.0"  # gunicorn only: `gen3d serve` and the tests bind 127.0.0.1
    ui: bool = False  # try-it page at / and /docs (gen3d.serve.ui); `gen3d serve` turns it on
    # Host names the UI server answers besides loopback ones (gen3d.serve.ui.local_guard)
    ui_hosts: tuple[str, ...] = ()
    # observability (issue 17): gen3d.serve.observe.logging_setup, gen3d.serve.observe.metrics
    log_format: str = "json"
    deployment: str = ""  # the endpoint's deployment name: a metric dimension
    emf_metrics: str = "auto"
    prometheus: bool = False  # /metrics in Prometheus text format
    # the buffering front (gen3d.serve.process.front): slow and idle clients meet nginx, not threads
    front: str = "auto"
    header_timeout_s: float = 10.0  # the whole request header
    body_timeout_s: float = 10.0  # between two reads of the body
    keepalive_s: int = 75  # idle keep-alive: longer than SageMaker's reuse, so no resets
    max_connections: int = 4096  # client connections; idle keep-alives are closed first

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        set_by: dict[str, str] = {}
        spellings = [*((v, v) for v in _VARIABLES), *ALIASES.items()]
        for var, canonical in spellings:
            field, parse = _VARIABLES[canonical]
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                continue
            try:
                value = parse(raw.strip())
            except (ValueError, TypeError) as exc:
                raise SettingsError(f"{var}={raw!r}: {exc}") from None
            if field in values and values[field] != value:
                raise SettingsError(
                    f"{var}={raw!r}: disagrees with {set_by[field]}; set one of them"
                )
            values[field], set_by[field] = value, var
        return cls(**values)

    def as_env(self) -> dict[str, str]:
        """The variables that reproduce these settings (for subprocesses and deploys)."""
        by_field = {field: var for var, (field, _) in _VARIABLES.items()}
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                value = "1" if value else "0"
            elif isinstance(value, tuple):  # a list setting (GEN3D_UI_HOSTS)
                value = ",".join(value)
            out[by_field[f.name]] = str(value)
        return out


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value

    return parse


def _int(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError("must be an integer") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _float(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("must be a number") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low:g} and {high:g}")
        return value

    return parse


def _bool(raw: str) -> bool:
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be 1/0, true/false, yes/no or on/off")


def _path(raw: str) -> Path:
    return Path(raw)


def _backend(raw: str) -> str:
    """A built-in or entry-point backend name, or `package.module:Class` (imported at load,
    where a failure keeps /ping at 503 with the reason). Which names exist is the
    backends' registry's to say (gen3d.serve.backends.lookup, checked by the capacity
    plan at start-up), so settings need not import the backends."""
    name = raw if ":" in raw else raw.lower()
    if not all(c.isalnum() or c in "._:-" for c in name):
        raise ValueError("must be a backend name or package.module:Class")
    return name


def _host(raw: str) -> str:
    if any(c.isspace() for c in raw) or "/" in raw:
        raise ValueError("must be an address such as 0.0.0.0 or 127.0.0.1")
    return raw


def _host_names(raw: str) -> tuple[str, ...]:
    names = tuple(name.strip().lower() for name in raw.split(",") if name.strip())
    if any(not all(c.isalnum() or c in "-.:[]" for c in name) for name in names):
        raise ValueError("must be host names separated by commas, e.g. devbox.lan,10.0.0.5")
    return names


def _label(raw: str) -> str:
    if not all(c.isalnum() or c in "-_." for c in raw) or len(raw) > 63:
        raise ValueError("must be up to 63 letters, digits, '-', '_' or '.'")
    return raw


# variable -> (Settings field, parser)
_VARIABLES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "GEN3D_BACKEND": ("backend", _backend),
    "GEN3D_MODEL_DIR": ("model_dir", _path),
    "SAGEMAKER_BIND_TO_PORT": ("port", _int(1, 65535)),
    "GEN3D_DEVICE": ("device", _choice(DEVICES)),
    "GEN3D_PRECISION": ("precision", _choice(PRECISIONS)),
    "GEN3D_MAX_BATCH_SIZE": ("max_batch_size", _int(1, 256)),
    "GEN3D_MAX_BATCH_DELAY_MS": ("max_batch_delay_ms", _float(0, 10_000)),
    "GEN3D_MAX_QUEUE": ("max_queue", _int(1, 10_000)),
    "GEN3D_MAX_WAITING": ("max_waiting", _int(0, 10_000)),
    "GEN3D_ADMISSION_WAIT_S": ("admission_wait_s", _float(0, 3600)),
    "GEN3D_REQUEST_TIMEOUT_S": ("request_timeout_s", _float(0.001, 3600)),
    "GEN3D_MAX_BODY_MB": ("max_body_mb", _float(0.001, 1024)),
    "GEN3D_MAX_IMAGE_PIXELS": ("max_image_pixels", _int(1, 1 << 30)),
    "GEN3D_MAX_IMAGE_SIDE": ("max_image_side", _int(0, 1 << 15)),
    "GEN3D_ALLOW_UNVERIFIED_MODEL": ("allow_unverified_model", _bool),
    "GEN3D_DECODE_CONCURRENCY": ("decode_concurrency", _int(1, 256)),
    "GEN3D_MAX_BATCH_ITEMS": ("max_batch_items", _int(1, 1024)),
    "GEN3D_WARMUP": ("warmup", _bool),
    "MODEL_SERVER_WORKERS": ("workers", _int(0, 256)),  # 0: from the hardware
    "GEN3D_WORKER_THREADS": ("worker_threads", _int(0, 20_000)),  # 0: see capacity.plan
    "MODEL_SERVER_TIMEOUT": ("server_timeout_s", _int(1, 3600)),
    "GEN3D_LOG_LEVEL": ("log_level", _choice(LOG_LEVELS)),
    "GEN3D_STAGE_OFFLOAD": ("stage_offload", _bool),
    "GEN3D_TORCH_THREADS": ("torch_threads", _int(0, 1024)),
    "GEN3D_BIND_HOST": ("bind_host", _host),
    "GEN3D_UI": ("ui", _bool),
    "GEN3D_UI_HOSTS": ("ui_hosts", _host_names),
    "GEN3D_LOG_FORMAT": ("log_format", _choice(LOG_FORMATS)),
    "GEN3D_DEPLOYMENT": ("deployment", _label),
    "GEN3D_EMF": ("emf_metrics", _choice(EMF_MODES)),
    "GEN3D_PROMETHEUS": ("prometheus", _bool),
    "GEN3D_FRONT": ("front", _choice(FRONTS)),
    "GEN3D_HEADER_TIMEOUT_S": ("header_timeout_s", _float(0.1, 3600)),
    "GEN3D_BODY_TIMEOUT_S": ("body_timeout_s", _float(0.1, 3600)),
    "GEN3D_KEEPALIVE_S": ("keepalive_s", _int(0, 3600)),
    "GEN3D_MAX_CONNECTIONS": ("max_connections", _int(64, 1_000_000)),
}

# Other spellings of a variable above: alias -> variable. SageMaker's inference toolkit
# documents SAGEMAKER_MODEL_SERVER_WORKERS; MODEL_SERVER_WORKERS is the BYOC examples' name.
ALIASES = {"SAGEMAKER_MODEL_SERVER_WORKERS": "MODEL_SERVER_WORKERS"}

ENV_VARIABLES = tuple(_VARIABLES)
