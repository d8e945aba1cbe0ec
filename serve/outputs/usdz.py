"""USDZ for iOS AR Quick Look (issue 15), written with Pixar's USD library (`usd-core`).

An optional extra (`pip install 'gen3d[usd]'`): the wheel adds about 210 MB installed,
a third of the cpu image, so a server without it answers `Accept: model/vnd.usdz+zip`
with 406 and says how to get it. The mesh keeps our glTF frame (y up, metres),
with per-vertex colours as `primvars:displayColor`, or the texture on `primvars:st`,
bound through a UsdPreviewSurface.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np

from gen3d.serve.outputs.assets import Mesh, texture_jpeg

MEDIA_TYPE = "model/vnd.usdz+zip"
TEXTURE_FILE = "texture.jpg"
MISSING = (
    "USDZ output needs the optional USD library, which this server does not have "
    "(install the 'usd' extra: pip install 'gen3d[usd]', i.e. usd-core); ask for "
    "model/gltf-binary instead"
)


@functools.cache
def available() -> bool:
    """Whether usd-core imports here (checked once per process)."""
    try:
        from pxr import Usd, UsdUtils  # noqa: F401
    except ImportError:
        return False
    return True


def mesh_to_usdz(mesh: Mesh, metadata: dict) -> bytes:
    """One-mesh USDZ package: points, triangles, normals, and display colours or (with
    texture=image) the photo texture on `st` coordinates."""
    from pxr import Gf, Sdf, Usd, UsdGeom, UsdShade, UsdUtils, Vt

    from gen3d.serve.outputs.assets import vertex_normals

    with tempfile.TemporaryDirectory(prefix="gen3d-usdz-") as tmp:
        layer_path = str(Path(tmp) / "object.usdc")
        stage = Usd.Stage.CreateNew(layer_path)
        UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
        UsdGeom.SetStageMetersPerUnit(stage, 1.0)
        root = UsdGeom.Xform.Define(stage, "/object")
        stage.SetDefaultPrim(root.GetPrim())
        root.GetPrim().SetCustomDataByKey("gen3d", str(metadata))
        geom = UsdGeom.Mesh.Define(stage, "/object/mesh")
        geom.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(mesh.vertices))
        geom.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(len(mesh.faces), 3)))
        geom.CreateFaceVertexIndicesAttr(
            Vt.IntArray.FromNumpy(mesh.faces.reshape(-1).astype(np.int32))
        )
        geom.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(vertex_normals(mesh.vertices, mesh.faces)))
        geom.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
        geom.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)  # triangles as they are
        geom.CreateOrientationAttr(UsdGeom.Tokens.rightHanded)  # counter-clockwise
        lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
        geom.CreateExtentAttr(Vt.Vec3fArray([Gf.Vec3f(*lo.tolist()), Gf.Vec3f(*hi.tolist())]))
        colors = mesh.vertex_colors[:, :3].astype(np.float32) / 255.0
        primvar = UsdGeom.PrimvarsAPI(geom).CreatePrimvar(
            "displayColor", Sdf.ValueTypeNames.Color3fArray, UsdGeom.Tokens.vertex
        )
        primvar.Set(Vt.Vec3fArray.FromNumpy(colors))
        material = UsdShade.Material.Define(stage, "/object/material")
        shader = UsdShade.Shader.Define(stage, "/object/material/surface")
        shader.CreateIdAttr("UsdPreviewSurface")
        diffuse = shader.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f)
        if mesh.uv is not None and mesh.texture is not None:
            # texture=image: the same JPEG as the GLB's, packaged next to the layer. USD's
            # st has v up where glTF's uv has v down.
            (Path(tmp) / TEXTURE_FILE).write_bytes(texture_jpeg(mesh.texture))
            st = np.stack([mesh.uv[:, 0], 1.0 - mesh.uv[:, 1]], axis=1).astype(np.float32)
            UsdGeom.PrimvarsAPI(geom).CreatePrimvar(
                "st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.vertex
            ).Set(Vt.Vec2fArray.FromNumpy(st))
            st_reader = UsdShade.Shader.Define(stage, "/object/material/st")
            st_reader.CreateIdAttr("UsdPrimvarReader_float2")
            st_reader.CreateInput("varname", Sdf.ValueTypeNames.String).Set("st")
            st_out = st_reader.CreateOutput("result", Sdf.ValueTypeNames.Float2)
            texture = UsdShade.Shader.Define(stage, "/object/material/texture")
            texture.CreateIdAttr("UsdUVTexture")
            texture.CreateInput("file", Sdf.ValueTypeNames.Asset).Set(TEXTURE_FILE)
            texture.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(st_out)
            texture.CreateInput("wrapS", Sdf.ValueTypeNames.Token).Set("clamp")
            texture.CreateInput("wrapT", Sdf.ValueTypeNames.Token).Set("clamp")
            diffuse.ConnectToSource(texture.CreateOutput("rgb", Sdf.ValueTypeNames.Float3))
        else:
            # Vertex colours through a primvar reader (some viewers, AR Quick Look among
            # them, may show vertex colours flat or not at all: texture=image is safer).
            reader = UsdShade.Shader.Define(stage, "/object/material/color")
            reader.CreateIdAttr("UsdPrimvarReader_float3")
            reader.CreateInput("varname", Sdf.ValueTypeNames.String).Set("displayColor")
            diffuse.ConnectToSource(reader.CreateOutput("result", Sdf.ValueTypeNames.Float3))
        shader.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(1.0)
        material.CreateSurfaceOutput().ConnectToSource(shader.ConnectableAPI(), "surface")
        UsdShade.MaterialBindingAPI.Apply(geom.GetPrim()).Bind(material)
        stage.GetRootLayer().Save()
        package = str(Path(tmp) / "object.usdz")
        if not UsdUtils.CreateNewUsdzPackage(Sdf.AssetPath(layer_path), package):
            raise RuntimeError("usd-core could not write the USDZ package")
        return Path(package).read_bytes()
