"""What a generation returns: the file's bytes, its format and metadata, and ways to keep
it (`save`) or use it (`to_trimesh`)."""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gen3d.client.errors import ServerError, from_error_body, server_error
from gen3d.client.inputs import FORMAT_MEDIA_TYPE, SUFFIX

_FORMAT_BY_MEDIA_TYPE = {media: fmt for fmt, media in FORMAT_MEDIA_TYPE.items()}


@dataclass(frozen=True)
class Result:
    """One generated asset. `metadata` is what the server reports (backend, faces,
    vertices, seed, request_id ...): from the X-Gen3D-Metadata header, a JSON answer, or a
    GLB's `asset.extras`; a PLY or OBJ that crossed SageMaker (which drops custom response
    headers) has none."""

    data: bytes
    format: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def request_id(self) -> str | None:
        return self.metadata.get("request_id")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the bytes to `path` (a folder gets `result.<format>` inside); returns it."""
        target = Path(path)
        if target.is_dir():
            target = target / f"result{SUFFIX[self.format]}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.data)
        return target

    def to_trimesh(self) -> Any:
        """A `trimesh.Trimesh` for GLB and OBJ, a `trimesh.PointCloud` for a Gaussian-splat
        PLY (its splat centres and colours)."""
        import trimesh

        if self.format == "usdz":
            raise ValueError("trimesh cannot read USDZ; save() it, or ask for format='glb'")
        if self.format == "ply":
            return _splat_points(self.data)
        loaded = trimesh.load(io.BytesIO(self.data), file_type=self.format, force="mesh")
        return loaded

    def __repr__(self) -> str:
        keys = ("backend", "faces", "vertices", "seed")
        shown = ", ".join(f"{k}={self.metadata[k]}" for k in keys if k in self.metadata)
        return f"Result({self.format}, {len(self.data):,} bytes{', ' + shown if shown else ''})"


def _splat_points(data: bytes) -> Any:
    """Splat PLY -> PointCloud; colours from the degree-0 SH term (0.5 + C0 * f_dc)."""
    import numpy as np
    import trimesh

    loaded = trimesh.load(io.BytesIO(data), file_type="ply")
    vertices = np.asarray(loaded.vertices)
    colors = None
    raw = getattr(loaded, "metadata", {}).get("_ply_raw", {}).get("vertex", {}).get("data")
    if raw is not None and raw.dtype.names and "f_dc_0" in raw.dtype.names:
        sh_c0 = 0.28209479177387814  # the zeroth spherical-harmonic basis constant
        dc = np.stack([raw[f"f_dc_{i}"] for i in range(3)], axis=1)
        rgb = np.clip((0.5 + sh_c0 * dc) * 255, 0, 255).astype(np.uint8)
        colors = np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], axis=1)
    return trimesh.PointCloud(vertices, colors=colors)


def metadata_of(data: bytes) -> dict[str, Any]:
    """The gen3d metadata of a GLB (asset.extras), or {} for other formats."""
    if data[:4] != b"glTF" or len(data) < 20:
        return {}
    length = int.from_bytes(data[12:16], "little")
    try:
        return json.loads(data[20 : 20 + length]).get("asset", {}).get("extras", {}) or {}
    except (ValueError, AttributeError):
        return {}


def single_result(
    data: bytes, requested_format: str, content_type: str | None, header_metadata: str | None
) -> Result:
    """A binary single answer; a JSON one (application/json) is decoded instead."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media == "application/json":
        return asset_result(json.loads(data))
    fmt = _FORMAT_BY_MEDIA_TYPE.get(media, requested_format)
    metadata: dict[str, Any] = {}
    if header_metadata:
        try:
            metadata = json.loads(header_metadata)
        except ValueError:
            metadata = {}
    return Result(data, fmt, metadata or metadata_of(data))


def asset_result(doc: dict[str, Any]) -> Result:
    """`{"format", "data" (base64), "metadata"}` -> Result."""
    try:
        data = base64.b64decode(doc["data"], validate=True)
        return Result(data, doc["format"], dict(doc.get("metadata") or {}))
    except (KeyError, TypeError, binascii.Error) as exc:
        raise server_error(
            "bad_response", f"the server's JSON answer is not an asset ({exc})"
        ) from None


def batch_results(body: bytes) -> list[Result | ServerError]:
    """`{"predictions": [...]}` -> one Result or typed error per item, in request order."""
    try:
        predictions = json.loads(body)["predictions"]
    except (ValueError, KeyError, TypeError) as exc:
        raise server_error(
            "bad_response", f"the batch answer has no predictions list ({exc})"
        ) from None
    out: list[Result | ServerError] = []
    for prediction in predictions:
        if isinstance(prediction, dict) and "error" in prediction:
            out.append(from_error_body(prediction))
        else:
            out.append(asset_result(prediction))
    return out
