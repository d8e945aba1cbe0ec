"""The buffering front and the only balancer: nginx before one gunicorn per model worker.

nginx holds slow and idle clients in its event loop and reads every body whole before a
worker sees it (gunicorn has no header or body read timeout); it sends /invocations to the
worker with the fewest in flight (`least_conn`), never past what that worker holds
(`max_conns`), passes a worker's 503 on to the next, and answers 413, 503 and 504 itself in
our JSON error shape. `render_config` is a pure function of the settings and the capacity
plan (docs/architecture.md#the-front).
"""

from __future__ import annotations

import json
import resource
import shutil
from dataclasses import dataclass
from pathlib import Path

from gen3d.serve.errors import FRONT_ERRORS, FRONT_UNAVAILABLE
from gen3d.serve.http.forwarded import FORWARDED_AT_HEADER
from gen3d.serve.model.capacity import CapacityPlan
from gen3d.serve.settings import Settings

NGINX = "nginx"
FDS_PER_CONNECTION = 2  # a proxied request holds two in nginx's worker: client, upstream
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

    def worker_socket(self, index: int) -> Path:
        """Model worker `index`'s gunicorn socket."""
        return self.run_dir / f"worker-{index}.sock"


def connection_limit(settings: Settings, nofile: int | None = None) -> int:
    """nginx's worker_connections: the setting, within the descriptors we may open."""
    if nofile is None:
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        nofile = hard if hard != resource.RLIM_INFINITY else 1 << 20
    return max(64, min(settings.max_connections, (nofile - FD_RESERVE) // FDS_PER_CONNECTION))


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


def _error_pages(errors: dict[int, tuple[str, str]]) -> tuple[str, str]:
    """nginx's `error_page` lines and internal URI locations, one per status (a named @x
    fails for a request whose URI nginx could not parse: nginx then sends its HTML 500)."""
    pages = "".join(f"\n        error_page {st} ={st} /_gen3d_error/{st};" for st in errors)
    locations = "".join(
        f"""
        location = /_gen3d_error/{status} {{
            internal;
            client_max_body_size 0;  # the request's own location already allowed its body
            default_type application/json;
            add_header X-Request-Id $request_id always;
            return {status} {_error_json(code, message)};
        }}"""
        for status, (code, message) in errors.items()
    )
    return pages, locations


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def render_config(
    settings: Settings, layout: FrontLayout, plan: CapacityPlan, nofile: int | None = None
) -> str:
    """nginx.conf for these settings, the plan's workers behind it."""
    connections = connection_limit(settings, nofile)
    sockets = [f"unix:{layout.worker_socket(i)}" for i in range(plan.workers)]
    # max_fails=0: a worker's 503 (queue full, loading) must not take it out of rotation
    invocations = "".join(
        f"\n        server {s} max_conns={plan.invocations} max_fails=0;" for s in sockets
    )
    control = "".join(f"\n        server {s} max_fails=0;" for s in sockets)
    run = layout.run_dir
    busy, starting = (_error_json(*FRONT_UNAVAILABLE[k]) for k in ("busy", "starting"))
    # Every status nginx makes itself, in our JSON shape (502/503 below: busy or starting)
    pages, locations = _error_pages(
        {
            st: (code, msg.format(max_body_mb=settings.max_body_mb))
            for st, (code, msg) in FRONT_ERRORS.items()
        }
    )
    # gunicorn answers within its request deadline; past server_timeout_s it is wedged
    read_timeout = int(settings.server_timeout_s) + 5
    return f"""# Written by gen3d.serve.process.front: change the settings, not this file.
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
        least_conn;{invocations}
    }}
    upstream gen3d_control {{
        least_conn;{control}
    }}
    # nginx names the upstream group (not a socket) when max_conns refused the request
    map $upstream_addr $gen3d_unavailable {{
        ~gen3d_invocations$ busy;  # also after workers that answered 503 were tried
        default starting;
    }}

    server {{
        listen {_host(settings.bind_host)}:{settings.port} backlog=4096;
        error_page 494 =400 /_gen3d_error/400;  # request header too large
        error_page 502 503 =503 /_gen3d_error/503;{pages}

        location = /invocations {{
            proxy_pass http://gen3d_invocations;
            # a worker that answered 503 did no work: the next one may take the request
            proxy_next_upstream http_503 non_idempotent;
            proxy_next_upstream_tries {plan.workers};
        }}
        location / {{
            proxy_pass http://gen3d_control;
            proxy_next_upstream error timeout http_503;
            proxy_next_upstream_tries {plan.workers};
        }}{_ui_locations(settings)}
        location = /_gen3d_error/503 {{
            internal;
            client_max_body_size 0;  # else a large viewer upload's error page became a 413
            default_type application/json;
            add_header X-Request-Id $request_id always;
            add_header Retry-After 1 always;
            if ($gen3d_unavailable = busy) {{
                return 503 {busy};
            }}
            return 503 {starting};
        }}{locations}
    }}
}}
"""
