"""Log lines as JSON objects (one a line, with the request id where one exists) or as text.

GEN3D_LOG_FORMAT=json (the default: CloudWatch Logs Insights queries the fields) or text
for a human at a terminal. The same configuration serves gunicorn's own loggers (through
`logconfig_dict` in gen3d.serve.process.gunicorn_conf, so the master's lines are JSON too) and the
workers' (`configure`, called by gen3d.serve.process.wsgi).

The request id lives in a context variable the app sets for the request's thread
(gen3d.serve.http.request_log); a filter copies it onto every record logged meanwhile. EMF
metric lines (gen3d.serve.observe.metrics) go through their own logger with a bare-message
formatter, because CloudWatch reads a log event as EMF only when the whole event is the
EMF object.
"""

from __future__ import annotations

import atexit
import logging
import logging.config
import queue
import re
import threading
from contextvars import ContextVar
from logging.handlers import QueueHandler, QueueListener
from typing import IO, Any

from gunicorn import glogging
from pythonjsonlogger.json import JsonFormatter

from gen3d.serve.settings import Settings

REQUEST_ID: ContextVar[str | None] = ContextVar("gen3d_request_id", default=None)
EMF_LOGGER = "gen3d.emf"  # bare EMF objects on stdout, never wrapped
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
JSON_FIELDS = ("asctime", "levelname", "name", "process", "message")
# nginx's error-log line: "2026/11/30 09:12:04 [error] 24368#24368: *3 message"
_NGINX_LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] [\d#]+: (?:\*\d+ )?(.*)$")
_NGINX_LEVELS = {"emerg": 50, "alert": 50, "crit": 50, "error": 40, "warn": 30, "notice": 20}


class RequestIdFilter(logging.Filter):
    """Stamp the current request's id on a record (an explicit `extra` id wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            request_id = REQUEST_ID.get()
            if request_id is not None:
                record.request_id = request_id
        return True


class TextFormatter(logging.Formatter):
    """The text format, with the request id and any per-request fields appended."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        return f"{line} [request {request_id}]" if request_id else line


def json_formatter() -> JsonFormatter:
    return JsonFormatter(
        list(JSON_FIELDS),
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )


def logging_config(settings: Settings) -> dict[str, Any]:
    """A `logging.config.dictConfig` mapping for the server (gunicorn's loggers included)."""
    level = settings.log_level.upper()
    formatter = "json" if settings.log_format == "json" else "text"
    stderr = {
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
        "formatter": formatter,
        "filters": ["request_id"],
    }
    ours = {"handlers": ["stderr"], "level": level, "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {
            "json": {"()": json_formatter},
            "text": {"()": TextFormatter, "format": TEXT_FORMAT},
            "bare": {"format": "%(message)s"},
        },
        "handlers": {
            "stderr": stderr,
            "emf": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout"}
            | {"formatter": "bare"},
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            "gunicorn.error": ours,
            # gunicorn's own access lines only at GEN3D_LOG_LEVEL=debug (as before): the
            # structured line per request is gen3d.access (gen3d.serve.http.request_log).
            "gunicorn.access": {**ours, "level": "INFO" if level == "DEBUG" else "WARNING"},
            EMF_LOGGER: {"handlers": ["emf"], "level": "INFO", "propagate": False},
        },
    }


class GunicornLogger(glogging.Logger):
    """gunicorn's logger (its `logger_class` setting) with our handlers and formats.

    Used instead of gunicorn's `logconfig_dict`, which would also switch on gunicorn's
    access logging and so build its access-log fields for every request even when the
    lines are filtered out; here they are built only when GEN3D_LOG_LEVEL=debug asks for
    them (gunicorn's `accesslog`)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        logging.config.dictConfig(logging_config(Settings.from_env()))


def relay_nginx_log(stream: IO[bytes]) -> None:
    """nginx writes plain text to stderr; re-log each line through our logging, so the
    container's log stays one JSON object a line (GEN3D_LOG_FORMAT)."""
    nginx_log = logging.getLogger("nginx")
    for raw in stream:
        line = raw.decode(errors="replace").rstrip()
        if line:
            match = _NGINX_LINE.match(line)
            level = _NGINX_LEVELS.get(match[1], logging.INFO) if match else logging.ERROR
            nginx_log.log(level, "%s", match[2] if match else line)


def configure(settings: Settings, background: bool = True) -> None:
    """Configure this process's logging (dictConfig replaces earlier handlers). With
    `background`, records are formatted and written by a thread of their own (a
    QueueListener per output), so a request thread only stamps the request id and
    enqueues: JSON formatting and the write leave the request path."""
    logging.config.dictConfig(logging_config(settings))
    # Python warnings and exceptions nobody caught become log lines too (JSON in JSON
    # mode), instead of bare text on stderr.
    logging.captureWarnings(True)
    threading.excepthook = _log_thread_exception
    if background:
        _move_writes_to_background()


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    exc_info = (args.exc_type, args.exc_value, args.exc_traceback)
    thread = args.thread.name if args.thread else "?"
    logging.getLogger("gen3d.uncaught").critical(
        "thread %s ended by an uncaught exception",
        thread,
        exc_info=exc_info,  # type: ignore[arg-type]
    )


class _RecordQueueHandler(QueueHandler):
    """Enqueue the record as it is: the listener's handler formats it (traceback into
    `exc_info`, extras as fields), instead of QueueHandler's pre-formatting here."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


_listeners: list[QueueListener] = []


def _move_writes_to_background() -> None:
    for listener in _listeners:
        listener.stop()
    _listeners.clear()
    queues: dict[int, _RecordQueueHandler] = {}
    for name in (None, "gunicorn.error", "gunicorn.access", EMF_LOGGER):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if id(handler) not in queues:
                records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
                front = _RecordQueueHandler(records)
                for f in handler.filters:  # the request id is read in the caller's thread
                    front.addFilter(f)
                listener = QueueListener(records, handler)
                listener.start()
                _listeners.append(listener)
                queues[id(handler)] = front
            logger.removeHandler(handler)
            logger.addHandler(queues[id(handler)])
    atexit.unregister(_flush)  # once, however often configure runs
    atexit.register(_flush)


def _flush() -> None:
    """Write what is queued before the process exits (gunicorn's workers exit normally)."""
    for listener in _listeners:
        listener.stop()
    _listeners.clear()
