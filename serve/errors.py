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


# What nginx answers itself (gen3d.serve.process.front), in the same shape: status ->
# (code, message), {max_body_mb} filled in from the settings.
FRONT_ERRORS: dict[int, tuple[str, str]] = {
    400: (BadRequest.code, "malformed HTTP request"),
    404: ("not_found", "no such path"),
    405: ("method_not_allowed", "method not allowed"),
    408: ("request_timeout", "the client was too slow sending its request"),
    411: ("length_required", "a body needs a Content-Length or chunked encoding"),
    413: (PayloadTooLarge.code, "the body is over {max_body_mb:g} MB (GEN3D_MAX_BODY_MB)"),
    414: ("uri_too_long", "the request URI is too long"),
    500: (InternalError.code, "the front failed to handle the request"),
    501: ("not_implemented", "unsupported transfer encoding or method"),
    504: (DeadlineExceeded.code, "no answer within MODEL_SERVER_TIMEOUT; the worker is replaced"),
    505: ("http_version_not_supported", "HTTP version not supported"),
}
# nginx's 502/503: every worker is full, or none answered (starting, or being replaced)
FRONT_UNAVAILABLE = {
    "busy": (QueueFull.code, "every worker's queue is full; retry later"),
    "starting": (
        NotReady.code,
        "no worker answered: the server is starting or replacing a worker; retry",
    ),
}


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
