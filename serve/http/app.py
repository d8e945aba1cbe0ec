"""Flask app factory: HTTP only (/ping, /invocations, /execution-parameters).

The app turns HTTP into a decoded request and an Answer into a response; what happens in
between is gen3d.serve.http.service.InvocationService. See docs/architecture.md.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from gen3d.serve import request_options
from gen3d.serve.errors import (
    Gen3DError,
    InternalError,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from gen3d.serve.http import codecs, forwarded, request_body, request_log
from gen3d.serve.http.service import InvocationService
from gen3d.serve.model.capacity import CapacityPlan
from gen3d.serve.model.runtime import ModelRuntime
from gen3d.serve.observe import metrics
from gen3d.serve.settings import Settings

log = logging.getLogger("gen3d.app")
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
_STATUS_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}

# CreateTransformJob: MaxPayloadInMB <= 100, and MaxConcurrentTransforms x MaxPayloadInMB
# <= 100 (API reference, MaxPayloadInMB).
TRANSFORM_PAYLOAD_BUDGET_MB = 100


def execution_parameters_for(plan: CapacityPlan, settings: Settings) -> dict[str, Any]:
    """What batch transform reads from GET /execution-parameters.

    One record per request (bodies are whole images, not line-split records). As many
    transforms in flight as the workers run at once (the backend's batch size, 1 for
    sam3d and silhouette), so no record waits in the container and each one's time is its
    own processing time (the request deadline bounds it). The payload limit shares the
    100 MB budget with that concurrency."""
    concurrent = plan.workers * plan.batch_size
    concurrent = min(concurrent, TRANSFORM_PAYLOAD_BUDGET_MB)
    payload = min(int(settings.max_body_mb), TRANSFORM_PAYLOAD_BUDGET_MB // concurrent)
    return {
        "MaxConcurrentTransforms": concurrent,
        "BatchStrategy": "SINGLE_RECORD",
        "MaxPayloadInMB": max(1, payload),
    }


def error_response(err: Gen3DError) -> Response:
    g.error_code = err.code  # for the request's log line and metrics (gen3d.serve.http.request_log)
    body = err.to_dict(g.get("request_id"))
    response = Response(json.dumps(body), status=err.status, mimetype="application/json")
    if err.retry_after_s is not None:
        response.headers["Retry-After"] = str(err.retry_after_s)
    return response


def create_app(runtime: ModelRuntime) -> Flask:
    settings = runtime.settings
    service = InvocationService(runtime)
    behind_front = forwarded.behind_front()  # only our nginx's clock is trusted
    # An early answer (415, 403, 503, ...) leaves the body unread; closing on unread data
    # resets the connection, and nginx, still sending the body, then lost the answer (502).
    # So every body the front lets through is drained: the request limit, or the try-it
    # page's larger viewer upload.
    drain_limit = settings.max_body_bytes
    if settings.ui:
        from gen3d.serve.ui.pages import VIEWABLE_MAX_BYTES

        drain_limit = max(drain_limit, VIEWABLE_MAX_BYTES)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes

    @app.before_request
    def _start() -> None:
        g.request_id = (
            request.headers.get("X-Amzn-RequestId")
            or request.headers.get("X-Request-Id")
            or uuid.uuid4().hex
        )
        g.started = time.perf_counter()
        runtime.liveness.request_started()

    @app.teardown_request
    def _done(_exc: BaseException | None) -> None:
        runtime.liveness.request_finished()

    @app.after_request
    def _finish(response: Response) -> Response:
        request_body.drain_unread(request.environ, drain_limit)
        response.headers["X-Request-Id"] = g.get("request_id", "")
        if CUSTOM_ATTRIBUTES in request.headers:
            response.headers[CUSTOM_ATTRIBUTES] = request.headers[CUSTOM_ATTRIBUTES]
        return response

    @app.errorhandler(Gen3DError)
    def _gen3d_error(err: Gen3DError) -> Response:
        return error_response(err)

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> Response:
        status = err.code or 500
        if isinstance(err, RequestEntityTooLarge):
            mb = settings.max_body_mb
            return error_response(
                PayloadTooLarge(f"the body is over {mb:g} MB (GEN3D_MAX_BODY_MB)")
            )
        mapped = Gen3DError(err.description or err.name)
        mapped.status, mapped.code = status, _STATUS_CODES.get(status, "http_error")  # type: ignore[misc]
        return error_response(mapped)

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> Response:
        log.error("request %s failed", g.get("request_id"), exc_info=err)
        return error_response(InternalError("unexpected server error; see the server log"))

    @app.get("/ping")
    def ping() -> Response:
        if runtime.ready:
            return Response(status=200)
        return error_response(runtime.not_ready())

    @app.get("/execution-parameters")
    def execution_parameters() -> Response:
        return Response(
            json.dumps(execution_parameters_for(runtime.plan, settings)),
            mimetype="application/json",
        )

    @app.post("/invocations")
    def invocations() -> Response:
        content_type = supported_content_type()  # 415 before anything else
        attributes = codecs.parse_custom_attributes(request.headers.get(CUSTOM_ATTRIBUTES))
        defaults = codecs.Defaults(
            seed=attributes.get("seed", 0),
            format=attributes.get("format"),
            options=request_options.from_custom_attributes(attributes),
        )
        # A queue slot (or 503) before the body is read; a bounded number of decodes.
        waited_s = forwarded.backlog_wait_s(
            request.headers.get(forwarded.FORWARDED_AT_HEADER), behind_front, time.time()
        )
        with service.admit(waited_s=waited_s) as admission:
            # the whole body, read outside the decode limit (slow clients hold no slot)
            body = request_body.read_body(
                request.environ, settings.max_body_bytes, "GEN3D_MAX_BODY_MB"
            )
            with service.decoding():
                decoded = decode_request(body, content_type, defaults, service.limits)
            accept = request.headers.get("Accept")
            outcome = service.invoke(decoded, accept, g.request_id, admission)
        g.outcome, encode_started = outcome, time.perf_counter()  # for gen3d.serve.http.request_log
        answer = outcome.encode()
        g.encode_ms = outcome.encode_ms + round(1000 * (time.perf_counter() - encode_started), 3)
        return Response(answer.body, mimetype=answer.media_type, headers=answer.headers)

    if settings.ui:  # local pages: try-it (/), /docs (gen3d.serve.ui)
        from gen3d.serve.ui.pages import register as register_ui

        register_ui(app, settings.ui_hosts)
    request_log.install(app, metrics.current())  # request id in logs, access line, metrics
    return app


def supported_content_type() -> str:
    """The request's media type if we read it, else 415."""
    content_type = codecs.media_type(request.headers.get("Content-Type"))
    if content_type in ("multipart/form-data", "application/json", *codecs.IMAGE_TYPES):
        return content_type
    raise UnsupportedMediaType(
        f"unsupported Content-Type {content_type or '(none)'!r}; send image/png "
        "(RGBA: alpha is the mask), image/jpeg, image/webp, multipart/form-data or "
        "application/json"
    )


def decode_request(
    body: bytes, content_type: str, defaults: codecs.Defaults, limits: codecs.Limits
) -> codecs.DecodedRequest:
    """The request's body, decoded by its Content-Type."""
    if content_type == "multipart/form-data":
        form, parts = request_body.parse_multipart(request.environ, body)
        files = {name: part.read() for name, part in parts.items()}
        return codecs.decode_multipart(files, form.to_dict(), defaults, limits)
    if content_type == "application/json":
        return codecs.decode_json(body, defaults, limits)
    return codecs.decode_image_body(body, defaults, limits, content_type)
