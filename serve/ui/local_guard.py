"""What every local page server (the try-it page's, `gen3d view`'s) checks and sends.

They run on a person's machine, so a web page in that person's browser is the attacker:
- Host must be a loopback name (or one GEN3D_UI_HOSTS lists): a site whose DNS name
  is rebound to 127.0.0.1 reaches the port as same-origin, but sends its own name.
- A request with an Origin must come from the server's own origin: a browser adds Origin
  to every cross-origin POST (and to fetches), so another site cannot run inference or
  upload to the viewer. Behind the front the Host header has lost its port (nginx's
  $host), so another local port is told apart by the browser's Sec-Fetch-Site
  ("same-site" for it, "same-origin" only for the page itself), required of every
  request that changes something.
- Every answer carries a Content-Security-Policy (scripts from the server only, or
  inline ones carrying this answer's nonce; no framing), X-Content-Type-Options: nosniff
  and X-Frame-Options: DENY.
Clients that send no Origin (curl, the Python client, SageMaker) are unaffected.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from urllib.parse import urlsplit

from flask import Flask, Response, g, has_request_context, request

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# model-viewer makes blob: URLs for textures and reads data: environment images; Swagger
# UI (/docs) runs one inline script and inline styles.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'{inline}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self' data: blob:; worker-src 'self' blob:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
INLINE_SCRIPT_PATHS = ("/docs",)  # Swagger UI's page starts itself from an inline script


def csp_nonce() -> str:
    """This answer's script nonce (templates: `nonce="{{ csp_nonce() }}"`); empty when a
    page is rendered outside a request (`gen3d view --html` writes a file, no header)."""
    if not has_request_context():
        return ""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return g.csp_nonce


def host_name(host: str) -> str:
    """The name part of a Host header: 'localhost:8080' -> 'localhost', '[::1]:80' -> '::1'."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def same_origin(origin: str, host: str) -> bool:
    """Whether `origin` (scheme://name[:port]) is the origin of a server reached as `host`;
    a Host without a port (behind the front) matches the name alone."""
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    host = host.strip().lower()
    if parts.hostname != host_name(host):
        return False
    host_port = host.rsplit(":", 1)[1] if host.count(":") == 1 or "]:" in host else None
    if host_port is None:
        return True
    return str(port or {"http": 80, "https": 443}[parts.scheme]) == host_port


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
SAME_ORIGIN_FETCHES = ("same-origin", "none")  # none: typed, bookmarked, opened by the user


def _refuse(code: str, message: str) -> Response:
    body = {"error": {"code": code, "message": message, "request_id": g.get("request_id")}}
    return Response(json.dumps(body), status=403, mimetype="application/json")


def install(app: Flask, extra_hosts: Iterable[str] = ()) -> None:
    """Check Host and Origin before every request of `app`; add the headers to each answer."""
    allowed = LOOPBACK_HOSTS | {host_name(h) for h in extra_hosts}
    app.jinja_env.globals["csp_nonce"] = csp_nonce

    @app.before_request
    def _check_host_and_origin() -> Response | None:
        host = request.headers.get("Host", "")
        if host_name(host) not in allowed:
            return _refuse(
                "forbidden_host",
                "this local server answers only loopback host names (GEN3D_UI_HOSTS lists others)",
            )
        origin = request.headers.get("Origin")
        fetch_site = request.headers.get("Sec-Fetch-Site")
        if (origin is not None and not same_origin(origin, host)) or (
            request.method not in SAFE_METHODS
            and fetch_site is not None
            and fetch_site.lower() not in SAME_ORIGIN_FETCHES
        ):
            return _refuse("forbidden_origin", "cross-origin requests are refused")
        return None

    @app.after_request
    def _security_headers(response: Response) -> Response:
        if request.path.startswith(INLINE_SCRIPT_PATHS):
            inline = " 'unsafe-inline'"
        else:
            inline = f" 'nonce-{g.csp_nonce}'" if "csp_nonce" in g else ""
        csp = CONTENT_SECURITY_POLICY.format(inline=inline)
        response.headers.setdefault("Content-Security-Policy", csp)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response
