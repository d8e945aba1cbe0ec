"""A loopback stand-in for the Hugging Face hub (and the two plain URLs DINOv2 comes from),
enough for huggingface_hub's model_info / snapshot_download / hf_hub_download:

- GET /api/models/{repo}[/revision/{rev}] -> {"id", "sha", "siblings": [{rfilename, size}]}
- HEAD|GET /{repo}/resolve/{rev}/{file} -> X-Repo-Commit, ETag, Content-Length; Range
- GET /files/{name} -> a plain file (DINOv2's zipball and weights), Range too

Access is the hub's: a gated repo answers 401 without a token and 403 to an account whose
request is not accepted, both with `X-Error-Code: GatedRepo` (what huggingface_hub turns
into GatedRepoError); a token the hub does not know gets 401 "Invalid credentials". A file
can be cut off once, mid-body, to exercise resuming. Every request is recorded.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

GRANTED, PENDING = "hf_granted_token", "hf_pending_token"


@dataclass
class Repo:
    files: dict[str, bytes]
    gated: bool = False
    commit: str = ""

    def __post_init__(self) -> None:
        if not self.commit:
            digest = hashlib.sha1()
            for name, data in sorted(self.files.items()):
                digest.update(name.encode() + hashlib.sha256(data).digest())
            self.commit = digest.hexdigest()


@dataclass
class Hub:
    repos: dict[str, Repo]
    plain: dict[str, bytes] = field(default_factory=dict)  # /files/{name}
    cut_once: set[str] = field(default_factory=set)  # file paths cut off on first GET
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    url: str = ""

    def gets_of(self, suffix: str) -> list[str | None]:
        """The Range header of every GET whose path ends with suffix."""
        return [
            rng for method, path, rng in self.requests if method == "GET" and path.endswith(suffix)
        ]


def _handler(hub: Hub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, str(value))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, code: str | None, message: str) -> None:
            headers = {"X-Error-Message": message, "Content-Type": "application/json"}
            if code:
                headers["X-Error-Code"] = code
            self._send(status, json.dumps({"error": message}).encode(), headers)

        def _allowed(self, name: str, repo: Repo) -> bool:
            auth = self.headers.get("Authorization", "")
            token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
            if token not in (None, GRANTED, PENDING):
                self._error(401, None, "Invalid credentials in Authorization header")
                return False
            if repo.gated and token is None:
                self._error(401, "GatedRepo", f"Access to model {name} is restricted.")
                return False
            if repo.gated and token == PENDING:
                self._error(
                    403,
                    "GatedRepo",
                    f"Access to model {name} is restricted and you are not in the "
                    "authorized list. Visit https://huggingface.co/{name} to ask for access.",
                )
                return False
            return True

        def _content(self, data: bytes, key: str, headers: dict) -> None:
            start, status = 0, 200
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if match:
                start = int(match.group(1))
                if start >= len(data):
                    self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                    return
                status = 206
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            body = data[start:]
            if self.command == "GET" and key in hub.cut_once and not match:
                hub.cut_once.discard(key)  # send half, then drop the connection
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, str(v))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self._send(status, body, {"Accept-Ranges": "bytes", **headers})

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.requests.append((self.command, path, self.headers.get("Range")))
            if path.startswith("/files/"):
                name = path.removeprefix("/files/")
                if name not in hub.plain:
                    self._error(404, None, "not found")
                    return
                self._content(hub.plain[name], name, {})
                return
            api = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
            if api:
                name = api.group(1)
                repo = hub.repos.get(name)
                if repo is None:
                    self._error(404, "RepoNotFound", "Repository not found")
                    return
                if not self._allowed(name, repo):
                    return
                info = {
                    "id": name,
                    "modelId": name,
                    "sha": repo.commit,
                    "private": False,
                    "gated": "manual" if repo.gated else False,
                    "siblings": [
                        {"rfilename": f, "size": len(d)} for f, d in sorted(repo.files.items())
                    ],
                }
                self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"})
                return
            resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
            if resolve:
                name, _rev, filename = resolve.groups()
                repo = hub.repos.get(name)
                if repo is None:
                    self._error(404, "RepoNotFound", "Repository not found")
                    return
                if not self._allowed(name, repo):
                    return
                if filename not in repo.files:
                    self._error(404, "EntryNotFound", f"{filename} not found")
                    return
                data = repo.files[filename]
                headers = {
                    "X-Repo-Commit": repo.commit,
                    "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                    "Content-Type": "application/octet-stream",
                }
                self._content(data, filename, headers)
                return
            self._error(404, None, "not found")

    return Handler


def serve(hub: Hub) -> tuple[ThreadingHTTPServer, threading.Thread]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread
