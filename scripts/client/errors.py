"""Typed errors of the client: one class per row of the server's error table (the code in
`{"error": {"code", "message", "request_id"}}`), plus what only a client sees: a bad input,
an endpoint that cannot serve yet, a deadline, an unreachable server, an AWS refusal."""

from __future__ import annotations

import json
from typing import Any, ClassVar


class Gen3DClientError(Exception):
    """Base of every error the client raises."""


class InputError(Gen3DClientError, ValueError):
    """The input cannot be sent: unreadable file, unsupported type, too large to send."""


class TransportError(Gen3DClientError, ConnectionError):
    """The server could not be reached or the connection broke (nothing was answered)."""


class AwsError(Gen3DClientError):
    """AWS refused a call for a reason other than the model's answer (permissions, a
    missing endpoint or bucket, a malformed request); `code` is AWS's error code."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class EndpointNotReadyError(Gen3DClientError):
    """The endpoint cannot serve: it is being created, failed, has no capacity (scaling
    from zero) past the wait the client allows, or hosts no inference component."""


class DeadlineExceededError(Gen3DClientError, TimeoutError):
    """The client's own deadline passed. For an async request `job` is the handle: the
    result may still arrive, and `job.wait()` picks it up later."""

    def __init__(self, message: str, job: Any = None) -> None:
        super().__init__(message)
        self.job = job


class ServerError(Gen3DClientError):
    """The container answered with one of its typed errors. Subclasses fix the code."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    # Refused before any work ran, so sending the same request again is safe.
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        retry_after_s: float | None = None,
        code: str | None = None,
    ) -> None:
        if code is not None:  # a code the table lacks (a newer server), kept as sent
            self.code = code  # type: ignore[misc]
        self.message = message
        self.http_status = status if status is not None else self.status
        self.request_id = request_id
        self.retry_after_s = retry_after_s
        where = f" (request {request_id})" if request_id else ""
        super().__init__(f"HTTP {self.http_status} {self.code}: {message}{where}")


class BadRequestError(ServerError):
    status, code = 400, "bad_request"


class NotAcceptableError(ServerError):
    status, code = 406, "not_acceptable"


class PayloadTooLargeError(ServerError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaTypeError(ServerError):
    status, code = 415, "unsupported_media_type"


class UnprocessableError(ServerError):
    status, code = 422, "unprocessable"


class ServerNotReadyError(ServerError):
    status, code, retryable = 503, "not_ready", True


class QueueFullError(ServerError):
    status, code, retryable = 503, "queue_full", True


class CapacityError(ServerError):
    """Out of accelerator memory even for one sample: retrying the same input won't help."""

    status, code = 503, "capacity"


class ServerDeadlineError(ServerError):
    status, code = 504, "deadline_exceeded"


class InternalServerError(ServerError):
    status, code = 500, "internal_error"


class AsyncInferenceError(ServerError):
    """An async request failed and its failure object is not one of our typed errors
    (SageMaker's own text, e.g. an invocation timeout); the message is that text."""

    status, code = 500, "async_failure"


SERVER_ERRORS: dict[str, type[ServerError]] = {
    cls.code: cls
    for cls in (
        BadRequestError,
        NotAcceptableError,
        PayloadTooLargeError,
        UnsupportedMediaTypeError,
        UnprocessableError,
        ServerNotReadyError,
        QueueFullError,
        CapacityError,
        ServerDeadlineError,
        InternalServerError,
    )
}


def server_error(
    code: str,
    message: str,
    *,
    status: int | None = None,
    request_id: str | None = None,
    retry_after_s: float | None = None,
) -> ServerError:
    """The typed error for `code`; an unknown code keeps its status under ServerError."""
    cls = SERVER_ERRORS.get(code)
    if cls is None:
        return ServerError(message, status=status, request_id=request_id, code=code)
    return cls(message, status=status, request_id=request_id, retry_after_s=retry_after_s)


def from_error_body(
    body: bytes | str | dict[str, Any],
    status: int | None = None,
    retry_after_s: float | None = None,
) -> ServerError:
    """Parse `{"error": {"code", "message", "request_id"}}`; anything else (a proxy's HTML
    page, SageMaker's own text) becomes a ServerError carrying the first 500 characters."""
    doc: Any = body
    if isinstance(body, bytes | str):
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            doc = None
    error = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        return server_error(
            error["code"],
            str(error.get("message", "")),
            status=status,
            request_id=error.get("request_id"),
            retry_after_s=retry_after_s,
        )
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    fallback = SERVER_ERRORS.get(_CODE_BY_STATUS.get(status or 0, ""), ServerError)
    return fallback(text.strip()[:500] or "(empty body)", status=status)


# An error body that is not ours (a load balancer's page): the status alone says which.
_CODE_BY_STATUS = {
    400: "bad_request",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    504: "deadline_exceeded",
}
