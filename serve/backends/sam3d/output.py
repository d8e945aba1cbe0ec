"""SAM 3D Objects' output dict -> our assets: mesh from "glb" (a trimesh.Trimesh with
vertex colours), splat from "gs" (written with its own save_ply, read back here), pose
metadata. Meshes and splats are centred and scaled to unit size like every Gen3D asset;
the centre and factor are recorded so the original frame can be recovered."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from gen3d.serve.assets import Asset, GaussianSplat, Mesh
from gen3d.serve.errors import Unprocessable
from gen3d.serve.geometry import unit_box


def output_to_asset(out: dict[str, Any]) -> Asset:
    """Upstream's output dict -> our Asset (mesh from "glb", splat from "gs", pose)."""
    metadata: dict[str, Any] = {"pose": {}, "normalization": {}}
    for key in ("rotation", "translation", "scale"):
        if out.get(key) is not None:
            metadata["pose"][key] = _as_list(out[key])
    mesh = None
    if out.get("glb") is not None:
        mesh, metadata["normalization"]["mesh"] = trimesh_to_mesh(out["glb"])
    splat = None
    if out.get("gs") is not None:
        splat, metadata["normalization"]["splat"] = gaussians_to_splat(out["gs"])
    if mesh is None and splat is None:
        raise ValueError("SAM 3D returned neither a mesh nor Gaussians")
    metadata["frame"] = (
        "SAM 3D object frame, centred and scaled to unit extent (normalization gives "
        "centre and factor); pose maps the object into the camera"
    )
    return Asset(mesh=mesh, splat=splat, metadata=metadata)


def _as_list(value: Any) -> list[float]:
    if hasattr(value, "detach"):
        value = value.detach().float().cpu().numpy()
    return np.asarray(value, dtype=np.float64).reshape(-1).tolist()


def trimesh_to_mesh(glb: Any) -> tuple[Mesh, dict[str, Any]]:
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
    centre, factor = unit_box(vertices)
    mesh = Mesh(vertices=(vertices - centre) * factor, faces=faces, vertex_colors=colors)
    return mesh, {"center": centre.tolist(), "factor": factor}


def gaussians_to_splat(gs: Any) -> tuple[GaussianSplat, dict[str, Any]]:
    """Through upstream's own writer (save_ply), read back with our PLY reader."""
    with tempfile.TemporaryDirectory(prefix="gen3d-sam3d-") as tmp:
        path = Path(tmp) / "gs.ply"
        gs.save_ply(str(path))
        table = read_binary_ply(path.read_bytes())
    try:
        means = np.stack([table["x"], table["y"], table["z"]], 1)
        f_dc = np.stack([table[f"f_dc_{i}"] for i in range(3)], 1)
        scales = np.stack([table[f"scale_{i}"] for i in range(3)], 1)
        rotations = np.stack([table[f"rot_{i}"] for i in range(4)], 1)
        opacity = table["opacity"]
    except KeyError as exc:
        raise ValueError(f"SAM 3D's splat PLY lacks property {exc}") from None
    if len(means) == 0:
        raise Unprocessable("SAM 3D returned no Gaussians for this input")
    centre, factor = unit_box(means)
    splat = GaussianSplat(
        means=(means - centre) * factor,
        f_dc=f_dc,
        opacity=opacity,
        scales=scales + np.log(factor),  # log-scales: scaling the scene adds log(factor)
        rotations=rotations,
    )
    for name in ("means", "f_dc", "opacity", "scales", "rotations"):
        setattr(splat, name, np.ascontiguousarray(getattr(splat, name), dtype=np.float32))
    return splat, {"center": centre.tolist(), "factor": factor}


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
