"""The output convention every backend's geometry ends in, coded once.

glTF's frame: x to the right of the photo, y up, +z towards the camera; centred on the
bounding box and scaled so the largest extent is 1 unit; triangles wound
counter-clockwise seen from outside (positive enclosed volume).
"""

from __future__ import annotations

import numpy as np


def image_axes_to_gltf(
    x_right: np.ndarray, y_down: np.ndarray, z_towards: np.ndarray
) -> np.ndarray:
    """Image-plane coordinates (x right, y down, z towards the camera) -> glTF (y up)."""
    return np.stack([x_right, -y_down, z_towards], axis=1).astype(np.float64)


def unit_box(points: np.ndarray) -> tuple[np.ndarray, float]:
    """The bounding-box centre and the factor that scales the largest extent to 1."""
    lo, hi = points.min(0), points.max(0)
    return (lo + hi) / 2, 1.0 / max(float((hi - lo).max()), 1e-9)


def to_unit_box(points: np.ndarray) -> np.ndarray:
    """`points` centred on their bounding box, largest extent 1."""
    centre, factor = unit_box(points)
    return (points - centre) * factor


def wound_outwards(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """`faces`, reversed if the enclosed signed volume is negative (normals pointing in)."""
    tri = vertices[faces]
    signed_volume = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum()
    return faces if signed_volume > 0 else faces[:, ::-1].copy()
