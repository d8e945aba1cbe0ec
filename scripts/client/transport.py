"""What every way of reaching the model shares: the reply, the limits a batch must fit,
and the retry/back-off policy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from gen3d.client.inputs import Request

# The container's defaults (gen3d.serve.settings.Settings; a test keeps them equal).
DEFAULT_MAX_BATCH_ITEMS = 16
DEFAULT_MAX_BODY_MB = 6.0


@dataclass(frozen=True)
class Reply:
    body: bytes
    content_type: str | None = None
    metadata_header: str | None = None  # X-Gen3D-Metadata (only a direct connection has it)


@dataclass(frozen=True)
class Limits:
    """How large one explicit batch may be."""

    max_batch_items: int = DEFAULT_MAX_BATCH_ITEMS
    max_body_bytes: int = int(DEFAULT_MAX_BODY_MB * 1024 * 1024)

    @classmethod
    def from_environment(cls, env: Mapping[str, str], cap_bytes: int | None = None) -> Limits:
        """Limits from a deployed model's environment (GEN3D_MAX_BATCH_ITEMS,
        GEN3D_MAX_BODY_MB), capped by what the invocation API itself accepts."""
        items, body_mb = DEFAULT_MAX_BATCH_ITEMS, DEFAULT_MAX_BODY_MB
        try:
            items = int(env.get("GEN3D_MAX_BATCH_ITEMS", items))
            body_mb = float(env.get("GEN3D_MAX_BODY_MB", body_mb))
        except ValueError:
            pass  # the server refuses such a value at start-up; keep the defaults
        body = int(body_mb * 1024 * 1024)
        if cap_bytes is not None:
            body = min(body, cap_bytes)
        return cls(max(1, items), max(1, body))


class Transport(Protocol):
    """One way to reach the model: a URL, a real-time endpoint, an async endpoint."""

    description: str

    def limits(self) -> Limits: ...

    def send(self, request: Request, timeout_s: float) -> Reply:
        """Send one request; raise the typed error the server or AWS answered."""
        ...


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off: first_s, then x factor, never above max_s."""

    first_s: float = 5.0
    factor: float = 2.0
    max_s: float = 60.0

    def delay(self, attempt: int) -> float:
        return min(self.max_s, self.first_s * self.factor**attempt)
