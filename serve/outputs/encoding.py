"""An asset as the bytes of one file format (GLB, PLY, OBJ or USDZ)."""

from __future__ import annotations

from gen3d.serve.outputs.assets import Asset, mesh_to_glb, mesh_to_obj, splat_to_ply
from gen3d.serve.outputs.usdz import mesh_to_usdz

FORMATS = ("glb", "ply", "obj", "usdz")


def encode_asset(asset: Asset, fmt: str) -> bytes:
    """Serialise `asset` as `fmt` (glb, ply, obj or usdz)."""
    if fmt == "glb":
        if asset.mesh is None:
            raise ValueError("this result has no mesh to write as GLB")
        return mesh_to_glb(asset.mesh, asset.metadata)
    if fmt == "obj":
        if asset.mesh is None:
            raise ValueError("this result has no mesh to write as OBJ")
        return mesh_to_obj(asset.mesh, asset.metadata)
    if fmt == "usdz":
        if asset.mesh is None:
            raise ValueError("this result has no mesh to write as USDZ")
        return mesh_to_usdz(asset.mesh, asset.metadata)
    if fmt == "ply":
        if asset.splat is None:
            raise ValueError("this result has no Gaussian splat to write as PLY")
        return splat_to_ply(asset.splat)
    raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
