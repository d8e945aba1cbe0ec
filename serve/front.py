"""The buffering front: nginx before gunicorn, as AWS's own BYOC example runs it.

gunicorn's request threads are the scarce resource, and gunicorn has no header or body
read timeout: a client that sends its header a byte at a time, or opens connections and
goes idle, holds a thread (72 slow-header connections stopped /ping). nginx holds such
clients in its event loop for a few hundred bytes each, reads every body completely
(memory up to 1 MB each, the rest in a temp file) and only then hands the request to
gunicorn on a unix socket, so a thread only ever sees a whole request.

What nginx answers itself, as JSON in our error shape (docs/architecture.md):
- 413 for a body over GEN3D_MAX_BODY_MB (chunked included), connection closed;
- 503 `queue_full` + Retry-After when every worker's queue and waiting room is taken
  (upstream max_conns), without a Python frame spent on it;
- 503 `not_ready` while gunicorn is not yet listening or a worker died mid-request;
- 504 `deadline_exceeded` when a worker has not answered within MODEL_SERVER_TIMEOUT
  (it is wedged; gen3d.serve.liveness has it replaced).
/ping goes through its own upstream without that limit, so it always reaches a worker,
where PING_HEADROOM threads are kept for it.

`render_config` is a pure function of the settings (tested as text and by `nginx -t`);
gen3d.serve.supervisor writes it and runs both processes.
"""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
from dataclasses import dataclass
from pathlib import Path

from gen3d.serve.backends import batch_capacity
from gen3d.serve.settings import Settings

NGINX = "nginx"
CONTROL_SOCKET_ENV = "GEN3D_CONTROL_SOCKET"  # set by gen3d.serve.supervisor for gunicorn
# nginx's clock ($msec) when it handed the request on: the time since is the time it
# waited in gunicorn's backlog for a worker, and counts against the request's deadline
FORWARDED_AT_HEADER = "X-Gen3D-Forwarded-At"
# Each proxied request holds two descriptors (client and upstream) in nginx's worker.
FDS_PER_CONNECTION = 2
FD_RESERVE = 64  # log, listen, temp files


class FrontError(RuntimeError):
    """The configured front cannot run here (GEN3D_FRONT=nginx without nginx)."""


def nginx_binary() -> str | None:
    return shutil.which(NGINX) or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).is_file()), None
    )


def chosen_front(settings: Settings) -> str | None:
    """The nginx binary to run, or None for gunicorn alone (GEN3D_FRONT=none, or auto
    where nginx is not installed)."""
    if settings.front == "none":
        return None
    binary = nginx_binary()
    if binary is None and settings.front == "nginx":
        raise FrontError("GEN3D_FRONT=nginx but no nginx binary is installed")
    return binary


@dataclass(frozen=True)
class FrontLayout:
    """Where the front's files live: one private run directory per server."""

    run_dir: Path

    @property
    def config(self) -> Path:
        return self.run_dir / "nginx.conf"

    @property
    def upstream_socket(self) -> Path:
        """gunicorn's socket for /invocations (taken by the least loaded ready worker)."""
        return self.run_dir / "gunicorn.sock"

    @property
    def control_socket(self) -> Path:
        """gunicorn's socket for everything else (/ping first): every ready worker takes it."""
        return self.run_dir / "gunicorn-control.sock"


def connection_limit(settings: Settings, nofile: int | None = None) -> int:
    """nginx's worker_connections: the setting, within the descriptors we may open."""
    if nofile is None:
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        nofile = hard if hard != resource.RLIM_INFINITY else 1 << 20
    return max(64, min(settings.max_connections, (nofile - FD_RESERVE) // FDS_PER_CONNECTION))


def backlog_wait_s(forwarded_at: str | None, behind_front: bool, now: float) -> float:
    """Seconds a request waited between the front and a worker (`now`: time.time()):
    0 when not behind our front (a client's own header means nothing) or unreadable."""
    if not behind_front or not forwarded_at:
        return 0.0
    try:
        waited = now - float(forwarded_at)
    except ValueError:
        return 0.0
    return waited if math.isfinite(waited) and waited > 0 else 0.0


def behind_front() -> bool:
    """Whether this process serves behind our nginx (the supervisor names the socket)."""
    return CONTROL_SOCKET_ENV in os.environ


def invocations_in_flight(settings: Settings, workers: int) -> int:
    """/invocations nginx lets through to gunicorn at once: per worker a running batch (as
    far as the backend batches: 1 for silhouette and sam3d, whatever GEN3D_MAX_BATCH_SIZE
    says), a full queue and a full waiting room. The workers hold two batches each and
    the rest wait in the socket's backlog (gen3d.serve.worker), so this is the only
    limit behind the front: counted with GEN3D_MAX_BATCH_SIZE, a silhouette server with
    a queue of 2 let 10 requests in per worker where it serves 3."""
    if settings.worker_threads:
        return workers * settings.invocation_slots
    running = batch_capacity(settings.backend, settings.max_batch_size)
    return workers * (running + settings.max_queue + settings.max_waiting)


def _error_json(code: str, message: str) -> str:
    """Our error body (gen3d.serve.errors) as an nginx string; $request_id is nginx's."""
    body = json.dumps({"error": {"code": code, "message": message, "request_id": "RID"}})
    quoted = body.replace("\\", "\\\\").replace("'", "\\'")
    return "'" + quoted.replace('"RID"', '"$request_id"') + "'"


def _ui_locations(settings: Settings) -> str:
    """The try-it page sends a result back to be made viewable: it may exceed the request
    limit (gen3d.serve.ui.pages has its own)."""
    if not settings.ui:
        return ""
    from gen3d.serve.ui.pages import VIEWABLE_MAX_BYTES, VIEWABLE_PATH

    return f"""
        location = {VIEWABLE_PATH} {{
            client_max_body_size {VIEWABLE_MAX_BYTES};
            proxy_pass http://gen3d_control;
        }}"""


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def render_config(
    settings: Settings, layout: FrontLayout, workers: int, nofile: int | None = None
) -> str:
    """nginx.conf for these settings, `workers` gunicorn workers behind it."""
    connections = connection_limit(settings, nofile)
    # Beyond it nginx refuses at once; /ping and the rest are not counted (their own
    # upstream).
    in_flight = invocations_in_flight(settings, workers)
    upstream = f"unix:{layout.upstream_socket}"
    run = layout.run_dir
    mb = f"{settings.max_body_mb:g}"
    too_large = _error_json("payload_too_large", f"the body is over {mb} MB (GEN3D_MAX_BODY_MB)")
    busy = _error_json("queue_full", "every worker's queue is full; retry later")
    starting = _error_json(
        "not_ready", "no worker answered: the server is starting or replacing a worker; retry"
    )
    stuck = _error_json(
        "deadline_exceeded", "no answer within MODEL_SERVER_TIMEOUT; the worker is replaced"
    )
    bad = _error_json("bad_request", "malformed HTTP request")
    timeout = _error_json("request_timeout", "the client was too slow sending its request")
    # gunicorn answers within its request deadline; past server_timeout_s it is wedged
    read_timeout = int(settings.server_timeout_s) + 5
    return f"""# Written by gen3d.serve.front for this server: change the settings, not this file.
daemon off;
master_process on;
worker_processes 1;
pid {run}/nginx.pid;
error_log stderr {"info" if settings.log_level == "debug" else "error"};
worker_rlimit_nofile {connections * FDS_PER_CONNECTION + FD_RESERVE};

events {{
    # when these run out, nginx closes idle keep-alive connections first, so idle
    # clients never block new ones from being accepted
    worker_connections {connections};
}}

http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {run}/client_body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;

    client_header_timeout {settings.header_timeout_s:g}s;
    client_body_timeout {settings.body_timeout_s:g}s;
    send_timeout {read_timeout}s;
    keepalive_timeout {settings.keepalive_s}s;
    keepalive_requests 100000;
    reset_timedout_connection on;
    lingering_timeout 2s;
    lingering_time 10s;
    client_max_body_size {settings.max_body_bytes};
    client_body_buffer_size 1m;
    large_client_header_buffers 4 16k;

    proxy_http_version 1.1;
    proxy_request_buffering on;
    proxy_buffering on;
    proxy_buffer_size 32k;  # response headers: X-Gen3D-Metadata, echoed custom attributes
    proxy_buffers 64 64k;
    proxy_connect_timeout 5s;
    proxy_send_timeout {read_timeout}s;
    proxy_read_timeout {read_timeout}s;
    proxy_set_header Host $http_host;  # the client's host *and port*: absolute redirects
    proxy_set_header Connection close;  # one request per upstream connection: none idle
    proxy_set_header X-Forwarded-For $remote_addr;
    proxy_set_header {FORWARDED_AT_HEADER} $msec;  # replaces any the client sent

    upstream gen3d_invocations {{
        zone gen3d_invocations 64k;
        server {upstream} max_conns={in_flight};
    }}
    upstream gen3d_control {{
        server unix:{layout.control_socket};
    }}
    # nginx names the upstream group (not a socket) when max_conns refused the request
    map $upstream_addr $gen3d_unavailable {{
        gen3d_invocations busy;
        default starting;
    }}

    server {{
        listen {_host(settings.bind_host)}:{settings.port} backlog=4096;
        error_page 413 =413 @too_large;
        error_page 400 =400 @bad_request;
        error_page 408 =408 @timeout;
        error_page 502 503 =503 @unavailable;
        error_page 504 =504 @upstream_timeout;

        location = /invocations {{
            proxy_pass http://gen3d_invocations;
        }}
        location / {{
            proxy_pass http://gen3d_control;
        }}{_ui_locations(settings)}
        location @too_large {{
            default_type application/json;
            add_header X-Request-Id $request_id always;
            return 413 {too_large};
        }}
        location @bad_request {{
            default_type application/json;
            return 400 {bad};
        }}
        location @timeout {{
            default_type application/json;
            return 408 {timeout};
        }}
        location @upstream_timeout {{
            default_type application/json;
            add_header X-Request-Id $request_id always;
            return 504 {stuck};
        }}
        location @unavailable {{
            default_type application/json;
            add_header X-Request-Id $request_id always;
            add_header Retry-After 1 always;
            if ($gen3d_unavailable = busy) {{
                return 503 {busy};
            }}
            return 503 {starting};
        }}
    }}
}}
"""
