"""Reading a request body the way a server facing the internet must.

- The size limit holds for every framing: a Content-Length over the limit is refused
  before a byte is read, and a chunked body is refused (413) the moment it passes the
  limit, never cut silently.
- A malformed body (bad chunk framing, a client that hangs up) is the client's 400,
  whatever exception the server's reader raises for it.
- A multipart body holds at most MAX_FORM_PARTS parts and MAX_FORM_MEMORY bytes of
  text fields (413 beyond): a request needs five parts (image, mask, seed, format,
  options), and 55 000 empty parts in a 4.4 MB body cost 2 s of parsing without them.
- A body left unread by an early answer (415, 503, ...) is drained afterwards, so the
  connection gunicorn keeps alive starts the next request at its first byte. Past the
  limit nothing is drained: gunicorn then closes the connection.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import parse_form_data

from gen3d.serve.errors import BadRequest, PayloadTooLarge
from gen3d.serve.request_options import client_int

CHUNK = 64 * 1024
READ_FLAG = "gen3d.body_read"
MAX_FORM_PARTS = 16
MAX_FORM_MEMORY = 256 * 1024  # text fields only; file parts (the images) are not counted


def declared_length(environ: Mapping[str, Any]) -> int | None:
    raw = environ.get("CONTENT_LENGTH") or ""
    if not raw.strip():
        return None
    return client_int(raw, "Content-Length", (0, 10**20 - 1))  # int() took "1_000", "²"


def read_body(environ: dict[str, Any], limit: int, limit_name: str) -> bytes:
    """The whole body, at most `limit` bytes (413 naming `limit_name` beyond that)."""
    environ[READ_FLAG] = True
    length = declared_length(environ)
    too_large = PayloadTooLarge(f"the body is over {limit / 2**20:g} MB ({limit_name})")
    if length is not None and length > limit:
        raise too_large
    stream = environ["wsgi.input"]
    chunks, size = [], 0
    try:
        while True:
            want = CHUNK if length is None else min(CHUNK, length - size)
            chunk = stream.read(want) if want > 0 else b""
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
    except PayloadTooLarge:
        raise
    except Exception:  # the server's reader: bad chunk framing, a client that left
        raise BadRequest("the request body is malformed or was cut off") from None
    if length is not None and size < length:
        raise BadRequest(f"the body ended after {size} of {length} bytes")
    return b"".join(chunks)


def parse_multipart(
    environ: Mapping[str, Any], body: bytes
) -> tuple[MultiDict[str, str], MultiDict[str, FileStorage]]:
    """Form fields and files of a multipart body already read by `read_body`."""
    replay = {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
    try:
        _, form, files = parse_form_data(
            replay,
            silent=False,
            max_form_parts=MAX_FORM_PARTS,
            max_form_memory_size=MAX_FORM_MEMORY,
        )
    except RequestEntityTooLarge:
        raise PayloadTooLarge(
            f"the multipart body has over {MAX_FORM_PARTS} parts or over "
            f"{MAX_FORM_MEMORY // 1024} KB of text fields"
        ) from None
    except Exception:
        raise BadRequest("the multipart body is malformed") from None
    return form, files


def drain_unread(environ: dict[str, Any], limit: int) -> None:
    """Read and drop a body nobody read, if it is within `limit` (see the module doc)."""
    if environ.get(READ_FLAG):
        return
    environ[READ_FLAG] = True
    try:
        length = declared_length(environ)
    except BadRequest:
        return
    chunked = "chunked" in (environ.get("HTTP_TRANSFER_ENCODING") or "").lower()
    if (length is None and not chunked) or (length is not None and length > limit):
        return
    stream, seen = environ["wsgi.input"], 0
    try:
        while seen <= limit:
            chunk = stream.read(CHUNK)
            if not chunk:
                return
            seen += len(chunk)
    except Exception:
        return
