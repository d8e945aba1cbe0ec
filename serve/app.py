"""Flask app factory: routes only (/ping, /invocations, /execution-parameters)."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import uuid
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from serve import __version__, codecs
from serve.errors import (
    Gen3DError,
    InternalError,
    NotReady,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from serve.runtime import ModelRuntime

log = logging.getLogger("gen3d.app")
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
_STATUS_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def create_app(runtime: ModelRuntime) -> Flask:
    settings = runtime.settings
    app = Flask("gen3d")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes

    def error_response(err: Gen3DError) -> Response:
        body = err.to_dict(getattr(g, "request_id", None))
        response = Response(json.dumps(body), status=err.status, mimetype="application/json")
        if err.retry_after_s is not None:
            response.headers["Retry-After"] = str(err.retry_after_s)
        return response

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
        log.exception("request %s failed", g.get("request_id"))
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
        if not runtime.ready or runtime.batcher is None:
            raise NotReady(runtime.failure or f"model is {runtime.state}", retry_after_s=5)
        attributes = codecs.parse_custom_attributes(request.headers.get(CUSTOM_ATTRIBUTES))
        defaults = codecs.Defaults(seed=attributes.get("seed", 0), format=attributes.get("format"))
        decoded = _decode(defaults, runtime)
        plan = codecs.plan_response(
            request.headers.get("Accept"), decoded.requested_format, decoded.is_batch
        )
        items = decoded.items
        if plan.format is not None:  # a single request: Accept may decide the format
            items = [
                dataclasses.replace(i, format=plan.format) if not isinstance(i, Gen3DError) else i
                for i in items
            ]
        samples = [i for i in items if not isinstance(i, Gen3DError)]
        jobs = runtime.batcher.submit(samples, settings.request_timeout_s) if samples else []
        outcomes = iter([runtime.batcher.wait(job) for job in jobs])
        results = [i if isinstance(i, Gen3DError) else next(outcomes) for i in items]
        formats = [getattr(i, "format", "glb") for i in items]
        for result in results:
            if not isinstance(result, Gen3DError):
                result.metadata.setdefault("version", __version__)
                result.metadata["request_id"] = g.request_id
        if not decoded.is_batch:
            result = results[0]
            if isinstance(result, Gen3DError):
                raise result
            return _single(result, formats[0], plan)
        body = codecs.encode_batch(results, formats, plan, lambda e: e.to_dict(g.get("request_id")))
        return Response(body, mimetype=plan.media_type)

    return app


def _decode(defaults: codecs.Defaults, runtime: ModelRuntime) -> codecs.DecodedRequest:
    limits = runtime.limits
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


def _single(asset: Any, fmt: str, plan: codecs.ResponsePlan) -> Response:
    if plan.wire == "json":
        return Response(json.dumps(codecs.asset_json(asset, fmt)), mimetype="application/json")
    response = Response(codecs.encode_item(asset, fmt), mimetype=plan.media_type)
    response.headers["X-Gen3D-Metadata"] = json.dumps(asset.metadata, separators=(",", ":"))
    return response
