"""SAM 3D Objects' output dict -> our assets: mesh from "glb" (a trimesh.Trimesh with
vertex colours), splat from "gs" (written with its own save_ply, read back here), pose.

Both are put in Gen3D's one frame (frames.py: the object as the camera saw it, +y up,
+x right, +z towards the camera), then centred and scaled to unit size together, so a
request's GLB and PLY overlap exactly. `pose` maps that asset back into the camera:
p_camera = scale * p_asset + translation (OpenGL camera axes); `upstream_pose` keeps
SAM 3D's own numbers and convention."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from gen3d.serve.backends.sam3d.frames import (
    GLB_Z_TO_Y_UP,
    P3D_TO_GL,
    object_to_output,
    rotate_orientations,
)
from gen3d.serve.errors import Unprocessable
from gen3d.serve.outputs.assets import Asset, GaussianSplat, Mesh
from gen3d.serve.outputs.geometry import unit_box

log = logging.getLogger("gen3d.backend")

POSE_KEYS = ("rotation", "translation", "scale")
UPSTREAM_POSE_CONVENTION = (
    "PyTorch3D row vectors: p_camera = (scale * p_object) @ R(rotation) + translation; "
    "rotation a quaternion (w, x, y, z); p_object in SAM 3D's z-up object frame (that of "
    "its Gaussians; its GLB is that frame turned y up); camera x left, y up, +z into the scene"
)
POSE_CONVENTION = (
    "p_camera = scale * p_asset + translation, for a point p_asset of this GLB/PLY; camera "
    "axes x right, y up, +z towards the viewer (the object lies at negative z), in the "
    "units of SAM 3D's depth estimate; rotation is the identity (the asset is already "
    "turned as the camera saw it)"
)


def output_to_asset(out: dict[str, Any]) -> Asset:
    """Upstream's output dict -> our Asset (mesh from "glb", splat from "gs", pose)."""
    pose = _upstream_pose(out)
    w = object_to_output(pose["rotation"] if pose else None)
    mesh_points = splat = mesh = None
    if out.get("glb") is not None:
        vertices, faces, colors = _trimesh_arrays(out["glb"])
        mesh_points = vertices @ GLB_Z_TO_Y_UP.T @ w  # undo to_glb's turn, then ours
    table = _gaussians_table(out["gs"]) if out.get("gs") is not None else None
    if mesh_points is None and table is None:
        raise Unprocessable("SAM 3D returned neither a mesh nor Gaussians for this input")
    splat_points = table["means"] @ w if table is not None else None
    reference = mesh_points if mesh_points is not None else splat_points
    centre, factor = unit_box(reference)
    if mesh_points is not None:
        mesh = Mesh(vertices=(mesh_points - centre) * factor, faces=faces, vertex_colors=colors)
    if table is not None:
        splat = GaussianSplat(
            means=(splat_points - centre) * factor,
            f_dc=table["f_dc"],
            opacity=table["opacity"],
            scales=table["scales"] + np.log(factor),  # log-scales: scaling adds log(factor)
            rotations=rotate_orientations(table["rotations"], w),
        )
        for name in ("means", "f_dc", "opacity", "scales", "rotations"):
            setattr(splat, name, np.ascontiguousarray(getattr(splat, name), dtype=np.float32))
    metadata: dict[str, Any] = {
        "frame": (
            "glTF: +y up, +x to the right of the photo, +z towards the camera; centred, "
            "largest extent 1; GLB and PLY share it"
            if pose
            else "SAM 3D object frame turned +y up (no pose returned, so not aligned with "
            "the photo); centred, largest extent 1; GLB and PLY share it"
        ),
        "normalization": {"center": centre.tolist(), "factor": factor},
    }
    if pose:
        s = pose["scale"]
        metadata["pose"] = {
            "rotation": [1.0, 0.0, 0.0, 0.0],
            "translation": (s * centre + pose["translation"] @ P3D_TO_GL).tolist(),
            "scale": s / factor,
            "convention": POSE_CONVENTION,
        }
        metadata["upstream_pose"] = {
            "rotation": pose["rotation"].tolist(),
            "translation": pose["translation"].tolist(),
            "scale": s,
            "convention": UPSTREAM_POSE_CONVENTION,
        }
    return Asset(mesh=mesh, splat=splat, metadata=metadata)


def _as_array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().float().cpu().numpy()
    return np.asarray(value, dtype=np.float64).reshape(-1)


def _upstream_pose(out: dict[str, Any]) -> dict[str, Any] | None:
    if any(out.get(key) is None for key in POSE_KEYS):
        return None
    scale = _as_array(out["scale"])
    # pose_decoder returns one scale repeated three times (inference_utils.py:324)
    if np.ptp(scale) > 1e-3 * abs(scale.mean()):
        log.warning("sam3d: anisotropic pose scale %s; using its mean", scale.tolist())
    return {
        "rotation": _as_array(out["rotation"]),
        "translation": _as_array(out["translation"]),
        "scale": float(scale.mean()),
    }


def _trimesh_arrays(glb: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if hasattr(glb, "geometry") and hasattr(glb, "to_mesh"):  # a trimesh.Scene
        glb = glb.to_mesh()
    vertices = np.asarray(glb.vertices, dtype=np.float64)
    faces = np.asarray(glb.faces, dtype=np.int64)
    if len(vertices) == 0 or len(faces) == 0:
        raise Unprocessable("SAM 3D returned an empty mesh for this input")
    visual = getattr(glb, "visual", None)
    if visual is not None and getattr(visual, "kind", None) == "vertex":
        colors = np.asarray(visual.vertex_colors, dtype=np.uint8)
    else:
        colors = np.full((len(vertices), 4), 200, np.uint8)
    return vertices, faces, colors


def _gaussians_table(gs: Any) -> dict[str, np.ndarray]:
    """Through upstream's own writer (save_ply), read back with our PLY reader."""
    with tempfile.TemporaryDirectory(prefix="gen3d-sam3d-") as tmp:
        path = Path(tmp) / "gs.ply"
        gs.save_ply(str(path))
        table = read_binary_ply(path.read_bytes())
    try:
        out = {
            "means": np.stack([table["x"], table["y"], table["z"]], 1).astype(np.float64),
            "f_dc": np.stack([table[f"f_dc_{i}"] for i in range(3)], 1),
            "scales": np.stack([table[f"scale_{i}"] for i in range(3)], 1),
            "rotations": np.stack([table[f"rot_{i}"] for i in range(4)], 1),
            "opacity": table["opacity"],
        }
    except KeyError as exc:
        raise ValueError(f"SAM 3D's splat PLY lacks property {exc}") from None
    if len(out["means"]) == 0:
        raise Unprocessable("SAM 3D returned no Gaussians for this input")
    return out


_PLY_TYPES = {
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
    "uchar": "u1", "uint8": "u1", "char": "i1", "int8": "i1",
    "ushort": "u2", "uint16": "u2", "short": "i2", "int16": "i2",
    "uint": "u4", "uint32": "u4", "int": "i4", "int32": "i4",
}  # fmt: skip


def read_binary_ply(data: bytes) -> dict[str, np.ndarray]:
    """The vertex element of a binary little-endian PLY as name -> float32 column."""
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise ValueError("not a PLY file")
    body_start = data.index(b"\n", end) + 1
    lines = data[:end].decode("ascii").splitlines()
    if "format binary_little_endian 1.0" not in lines:
        raise ValueError("only binary little-endian PLY is supported")
    count, fields, in_vertex = 0, [], False
    for line in lines:
        parts = line.split()
        if parts[:1] == ["element"]:
            if in_vertex:
                break  # vertex properties end at the next element
            in_vertex = parts[1] == "vertex"
            count = int(parts[2]) if in_vertex else 0
            if not in_vertex and not fields:
                raise ValueError("the PLY's first element is not 'vertex'")
        elif parts[:1] == ["property"] and in_vertex:
            if parts[1] == "list":
                raise ValueError("list properties in the vertex element are not supported")
            fields.append((parts[2], "<" + _PLY_TYPES[parts[1]]))
    table = np.frombuffer(data, dtype=np.dtype(fields), count=count, offset=body_start)
    return {name: table[name].astype(np.float32) for name, _ in fields}
