"""An asset as the bytes of one file format (GLB, PLY, OBJ or USDZ)."""

from __future__ import annotations

from gen3d.serve.outputs.assets import Asset, mesh_to_glb, mesh_to_obj, splat_to_ply
from gen3d.serve.outputs.usdz import mesh_to_usdz

FORMATS = ("glb", "ply", "obj", "usdz")


_MESH_WRITERS = {"glb": mesh_to_glb, "obj": mesh_to_obj, "usdz": mesh_to_usdz}


def encode_asset(asset: Asset, fmt: str) -> bytes:
    """Serialise `asset` as `fmt` (glb, ply, obj or usdz)."""
    if fmt in _MESH_WRITERS:
        if asset.mesh is None:
            raise ValueError(f"this result has no mesh to write as {fmt.upper()}")
        return _MESH_WRITERS[fmt](asset.mesh, asset.metadata)
    if fmt == "ply":
        if asset.splat is None:
            raise ValueError("this result has no Gaussian splat to write as PLY")
        return splat_to_ply(asset.splat)
    raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
