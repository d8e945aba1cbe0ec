"""Per-request observability on the Flask app: the request id on every log line of the
request, one structured line per request (`gen3d.access`), the request's metrics, and
Prometheus' /metrics when enabled. Installed by gen3d.serve.http.app with one call, so the
app itself stays about HTTP.

/ping lines are DEBUG (shown with GEN3D_LOG_LEVEL=debug): SageMaker and load balancers
ping every few seconds, and a line per ping would bury the requests; why a worker is not
ready is logged by gen3d.serve.model.runtime once, when it happens.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request

from gen3d.serve.observe.logging_setup import REQUEST_ID
from gen3d.serve.observe.metrics import Metrics, RequestRecord, prometheus_text

access_log = logging.getLogger("gen3d.access")
log = logging.getLogger("gen3d.request_log")


def install(app: Flask, metrics: Metrics) -> None:
    """Register the hooks; call after the app's own before_request has set g.request_id."""

    @app.before_request
    def _bind_request_id() -> None:
        REQUEST_ID.set(g.get("request_id"))

    @app.after_request
    def _record(response: Response) -> Response:
        if request.path == "/ping" and not access_log.isEnabledFor(logging.DEBUG):
            return response
        try:
            _log_and_measure(response, metrics)
        except Exception:  # observability must never turn an answer into an error
            log.exception("request log or metrics failed")
        return response

    @app.teardown_request
    def _unbind_request_id(_exc: BaseException | None) -> None:
        REQUEST_ID.set(None)  # request threads are reused

    if metrics.prometheus is not None:

        @app.get("/metrics")
        def prometheus_metrics() -> Response:
            body, content_type = prometheus_text()
            return Response(body, content_type=content_type)


def _log_and_measure(response: Response, metrics: Metrics) -> None:
    """The request's structured line, and its metrics for /invocations."""
    record = request_record(response)
    route = request.url_rule.rule if request.url_rule else request.path
    access_log.log(
        logging.DEBUG if request.path == "/ping" else logging.INFO,
        "%s %s %d %.1f ms",
        request.method,
        route,
        record.status,
        record.duration_ms,
        extra={
            "method": request.method,
            "route": route,
            "status": record.status,
            "duration_ms": record.duration_ms,
            "items": record.items,
            "batch_size": record.batch_size,
            # where the time went: waiting for the model, in it, encoding the answer
            "queue_ms": record.queue_ms,
            "inference_ms": record.inference_ms,
            "encode_ms": record.encode_ms,
            "error_code": record.error_code,
        },
    )
    if request.path == "/invocations":
        metrics.request(record)


def request_record(response: Response) -> RequestRecord:
    """The current request's record from its response and what the app left on `g`
    (`g.outcome`, the service's Outcome; `g.encode_ms`)."""
    started = g.get("started")
    duration_ms = round(1000 * (time.perf_counter() - started), 3) if started else 0.0
    outcome = g.get("outcome")
    metadata = [r.metadata for r in outcome.results if hasattr(r, "metadata")] if outcome else []

    def largest(key: str) -> float | None:
        values = [m[key] for m in metadata if isinstance(m.get(key), int | float)]
        return max(values) if values else None

    batch_size = largest("batch_size")
    return RequestRecord(
        request_id=g.get("request_id") or "",
        status=response.status_code,
        duration_ms=duration_ms,
        error_code=g.get("error_code"),  # set by gen3d.serve.http.app.error_response
        items=len(outcome.results) if outcome else 0,
        batch_size=int(batch_size) if batch_size is not None else None,
        queue_ms=largest("queue_ms"),
        inference_ms=largest("inference_ms"),
        encode_ms=g.get("encode_ms"),
        bytes_out=response.content_length or 0,
    )
