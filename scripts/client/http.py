"""Client side of the container contract: build a request from files, send it, save it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import requests

from gen3d.serve.codecs import FORMAT_MEDIA_TYPE

SUFFIX = {"glb": ".glb", "ply": ".ply", "obj": ".obj"}


@dataclass(frozen=True)
class EncodedRequest:
    body: bytes
    content_type: str
    accept: str
    custom_attributes: str


def encode_request(image: Path, mask: Path | None, fmt: str, seed: int) -> EncodedRequest:
    """One photo + mask as multipart, or an RGBA PNG (alpha = mask) as image/png."""
    attributes = f"seed={seed},format={fmt}"
    accept = FORMAT_MEDIA_TYPE[fmt]
    if mask is None:
        return EncodedRequest(image.read_bytes(), "image/png", accept, attributes)
    prepared = requests.Request(
        "POST",
        "http://unused/",
        files={
            "image": (image.name, image.read_bytes(), "application/octet-stream"),
            "mask": (mask.name, mask.read_bytes(), "application/octet-stream"),
        },
        data={"seed": str(seed), "format": fmt},
    ).prepare()
    return EncodedRequest(prepared.body, prepared.headers["Content-Type"], accept, attributes)


class InvokeError(RuntimeError):
    """The server answered with an error; the message carries its code and text."""


def post_invocation(url: str, request: EncodedRequest, timeout_s: float = 120.0) -> bytes:
    response = requests.post(
        url.rstrip("/") + "/invocations",
        data=request.body,
        headers={
            "Content-Type": request.content_type,
            "Accept": request.accept,
            "X-Amzn-SageMaker-Custom-Attributes": request.custom_attributes,
        },
        timeout=timeout_s,
    )
    if response.status_code != 200:
        try:
            error = response.json()["error"]
            detail = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            detail = response.text[:500]
        raise InvokeError(f"HTTP {response.status_code} {detail}")
    return response.content


def metadata_of(data: bytes) -> dict:
    """The gen3d metadata of a GLB (asset.extras), or {} for other formats."""
    if data[:4] != b"glTF":
        return {}
    length = int.from_bytes(data[12:16], "little")
    return json.loads(data[20 : 20 + length]).get("asset", {}).get("extras", {})
