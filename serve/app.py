"""Flask app factory: HTTP only (/ping, /invocations, /execution-parameters).

The app turns HTTP into a decoded request and an Answer into a response; what happens in
between is gen3d.serve.service.InvocationService. See docs/architecture.md.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from gen3d.serve import codecs, metrics, request_log
from gen3d.serve.errors import (
    Gen3DError,
    InternalError,
    NotReady,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from gen3d.serve.runtime import ModelRuntime
from gen3d.serve.service import InvocationService

log = logging.getLogger("gen3d.app")
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
_STATUS_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def error_response(err: Gen3DError) -> Response:
    body = err.to_dict(g.get("request_id"))
    response = Response(json.dumps(body), status=err.status, mimetype="application/json")
    if err.retry_after_s is not None:
        response.headers["Retry-After"] = str(err.retry_after_s)
    return response


def create_app(runtime: ModelRuntime) -> Flask:
    settings = runtime.settings
    service = InvocationService(runtime)
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

    @app.after_request
    def _finish(response: Response) -> Response:
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
        reason = runtime.failure or f"model is {runtime.state}"
        if runtime.state == "ready":
            reason = "the model thread stopped"
        return error_response(NotReady(reason))

    @app.get("/execution-parameters")
    def execution_parameters() -> Response:
        # One record per request (our bodies are whole images, not line-split records);
        # enough concurrent transforms to fill every worker's batches.
        body = {
            "MaxConcurrentTransforms": settings.workers * settings.max_batch_size,
            "BatchStrategy": "SINGLE_RECORD",
            "MaxPayloadInMB": max(1, int(settings.max_body_mb)),
        }
        return Response(json.dumps(body), mimetype="application/json")

    @app.post("/invocations")
    def invocations() -> Response:
        service.ready_batcher()  # 503 before the body is read
        attributes = codecs.parse_custom_attributes(request.headers.get(CUSTOM_ATTRIBUTES))
        defaults = codecs.Defaults(seed=attributes.get("seed", 0), format=attributes.get("format"))
        decoded = decode_request(defaults, service.limits)
        outcome = service.invoke(decoded, request.headers.get("Accept"), g.request_id)
        g.outcome, encode_started = outcome, time.perf_counter()  # for gen3d.serve.request_log
        answer = outcome.encode()
        g.encode_ms = round(1000 * (time.perf_counter() - encode_started), 3)
        return Response(answer.body, mimetype=answer.media_type, headers=answer.headers)

    request_log.install(app, metrics.current())  # request id in logs, access line, metrics
    return app


def decode_request(defaults: codecs.Defaults, limits: codecs.Limits) -> codecs.DecodedRequest:
    """The current Flask request's body, decoded by its Content-Type."""
    content_type = codecs.media_type(request.headers.get("Content-Type"))
    if content_type == "multipart/form-data":
        files = {name: part.read() for name, part in request.files.items()}
        return codecs.decode_multipart(files, request.form.to_dict(), defaults, limits)
    if content_type in codecs.IMAGE_TYPES:
        return codecs.decode_image_body(request.get_data(), defaults, limits)
    if content_type == "application/json":
        return codecs.decode_json(request.get_data(), defaults, limits)
    raise UnsupportedMediaType(
        f"unsupported Content-Type {content_type or '(none)'!r}; send image/png "
        "(RGBA: alpha is the mask), multipart/form-data or application/json"
    )
