"""Typed errors: each carries its HTTP status and a stable error code (docs/architecture.md)."""

from __future__ import annotations

import sys
from typing import Any, ClassVar


class Gen3DError(Exception):
    """Base of every error a client may see. Subclasses fix status and code."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s

    def to_dict(self, request_id: str | None = None) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "request_id": request_id}}


class BadRequest(Gen3DError):
    status, code = 400, "bad_request"


class NotAcceptable(Gen3DError):
    status, code = 406, "not_acceptable"


class PayloadTooLarge(Gen3DError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(Gen3DError):
    status, code = 415, "unsupported_media_type"


class Unprocessable(Gen3DError):
    status, code = 422, "unprocessable"


class NotReady(Gen3DError):
    status, code = 503, "not_ready"


class QueueFull(Gen3DError):
    status, code = 503, "queue_full"


class CapacityExceeded(Gen3DError):
    """Out of accelerator memory even for a batch of one."""

    status, code = 503, "capacity"


class DeadlineExceeded(Gen3DError):
    status, code = 504, "deadline_exceeded"


class InternalError(Gen3DError):
    status, code = 500, "internal_error"


class ArtifactError(RuntimeError):
    """The model artifact is missing, corrupt or does not match its manifest, or the
    machine cannot run it. The message is for the operator's log (it may name paths);
    `public`, when given, is a summary without paths that clients may be shown."""

    def __init__(self, message: str, public: str | None = None) -> None:
        super().__init__(message)
        self.public = public


def is_out_of_memory(exc: BaseException) -> bool:
    """torch.cuda.OutOfMemoryError (or a RuntimeError saying so), without importing torch."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
