"""Any result format as a GLB that <model-viewer> can show: it renders glTF only.

GLB passes through unchanged; an OBJ or mesh PLY becomes its mesh; a Gaussian-splat PLY
becomes one small octahedron per Gaussian in the Gaussian's colour (glTF points draw one
pixel wide, too faint to judge a result by).
"""

from __future__ import annotations

import io

import numpy as np
import trimesh

SH_C0 = 0.28209479177387814  # degree-0 spherical-harmonic constant: colour = 0.5 + C0 * f_dc
_OCTAHEDRON_VERTICES = np.array(
    [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float32
)
_OCTAHEDRON_FACES = np.array(
    [[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]]
)
MIN_MARKER = 0.004  # marker radius floor, in model units (the assets span about 1)


class NotViewable(ValueError):
    """The bytes are not a GLB, OBJ or PLY we can show; the message says why."""


def sniff_format(data: bytes) -> str:
    """glb / ply / obj from the first bytes (a GLB starts 'glTF', a PLY 'ply')."""
    if data[:4] == b"glTF":
        return "glb"
    if data[:3] == b"ply":
        return "ply"
    head = data[:4096].lstrip()
    if head[:1] in (b"v", b"#", b"o", b"g", b"m", b"f", b"u", b"s"):
        return "obj"
    raise NotViewable("not a GLB, PLY or OBJ file")


def viewable_glb(data: bytes, fmt: str | None = None) -> bytes:
    fmt = fmt or sniff_format(data)
    if fmt == "glb":
        return data
    try:
        loaded = trimesh.load(io.BytesIO(data), file_type=fmt, process=False)
    except Exception as exc:  # trimesh raises many types for a malformed file
        raise NotViewable(f"could not read the {fmt.upper()} file: {exc}") from None
    if isinstance(loaded, trimesh.Scene):
        loaded = loaded.to_mesh() if loaded.geometry else None
    if isinstance(loaded, trimesh.Trimesh) and len(loaded.faces):
        return loaded.export(file_type="glb")
    if isinstance(loaded, trimesh.PointCloud) and len(loaded.vertices):
        centres, rgba, radii = splat_points(loaded)
        return markers_mesh(centres, rgba, radii).export(file_type="glb")
    raise NotViewable(f"the {fmt.upper()} file holds no faces and no points")


def splat_points(cloud: trimesh.PointCloud) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centres, RGBA uint8, radius) of each point; splat colours and scales where present."""
    centres = np.asarray(cloud.vertices, dtype=np.float32)
    raw = cloud.metadata.get("_ply_raw", {}).get("vertex", {}).get("data")
    names = set(raw.dtype.names or ()) if raw is not None else set()
    rgba = np.full((len(centres), 4), 255, dtype=np.uint8)
    if {"f_dc_0", "f_dc_1", "f_dc_2"} <= names:
        dc = np.stack([raw[f"f_dc_{i}"] for i in range(3)], axis=1).astype(np.float32)
        rgba[:, :3] = np.clip((0.5 + SH_C0 * dc) * 255, 0, 255).astype(np.uint8)
    elif cloud.colors is not None and len(cloud.colors) == len(centres):
        rgba = np.asarray(cloud.colors, dtype=np.uint8)
    else:
        rgba[:, :3] = 160
    radii = np.full(len(centres), MIN_MARKER, dtype=np.float32)
    if {"scale_0", "scale_1", "scale_2"} <= names:  # stored as log-scales
        scales = np.stack([raw[f"scale_{i}"] for i in range(3)], axis=1).astype(np.float32)
        radii = np.maximum(np.exp(scales).mean(axis=1), MIN_MARKER)
    return centres, rgba, radii


def markers_mesh(centres: np.ndarray, rgba: np.ndarray, radii: np.ndarray) -> trimesh.Trimesh:
    """One octahedron per point, coloured per point."""
    n = len(centres)
    vertices = centres[:, None, :] + _OCTAHEDRON_VERTICES[None] * radii[:, None, None]
    faces = _OCTAHEDRON_FACES[None] + 6 * np.arange(n)[:, None, None]
    colours = np.repeat(rgba, len(_OCTAHEDRON_VERTICES), axis=0)
    return trimesh.Trimesh(
        vertices.reshape(-1, 3), faces.reshape(-1, 3), vertex_colors=colours, process=False
    )
