"""The finishing step (issue 15): face budget, closedness kept, colours carried, the
texture refusal for backends without one, metadata."""

from __future__ import annotations

import numpy as np
import trimesh

from gen3d.serve.backends.base import Sample
from gen3d.serve.errors import Unprocessable
from gen3d.serve.model.finishing import decimate, finish, is_closed
from gen3d.serve.outputs.assets import Asset, Mesh


def _sphere() -> Mesh:
    solid = trimesh.creation.icosphere(subdivisions=5)  # 20 480 faces, closed
    # Colour by height: red on top, blue below, so misplaced colours are visible.
    top = solid.vertices[:, 1] > 0
    colors = np.where(top[:, None], [255, 0, 0], [0, 0, 255]).astype(np.uint8)
    return Mesh(solid.vertices, solid.faces, colors)


def _sample(**options) -> Sample:
    return Sample(
        image=np.zeros((8, 8, 3), np.uint8),
        mask=np.ones((8, 8), bool),
        options=options,
        mask_source="alpha",
    )


def test_is_closed_tells_open_and_flipped_meshes() -> None:
    faces = _sphere().faces
    assert is_closed(faces)
    assert not is_closed(faces[1:])  # a hole
    assert not is_closed(np.vstack([faces[:1, ::-1], faces[1:]]))  # one face flipped


def test_decimate_meets_the_budget_keeps_it_closed_and_carries_colours() -> None:
    sphere = _sphere()
    small = decimate(sphere, 1000)
    assert len(small.faces) <= 1000 and is_closed(small.faces)
    assert trimesh.Trimesh(small.vertices, small.faces).is_watertight
    upper = small.vertices[:, 1] > 0.05
    assert (small.vertex_colors[upper, 0] == 255).all()
    assert (small.vertex_colors[small.vertices[:, 1] < -0.05, 2] == 255).all()


def test_finish_reports_faces_and_the_mask_source() -> None:
    asset = finish(_sample(target_faces=2000), Asset(mesh=_sphere(), metadata={}))
    assert isinstance(asset, Asset)
    assert asset.metadata["faces_before"] == 20480
    assert asset.metadata["faces_after"] == len(asset.mesh.faces) <= 2000
    assert asset.metadata["mask_source"] == "alpha" and asset.mask is not None


def test_finish_leaves_a_mesh_under_budget_alone() -> None:
    sphere = _sphere()
    asset = finish(_sample(target_faces=100_000), Asset(mesh=sphere, metadata={}))
    assert asset.mesh is sphere and asset.metadata["faces_after"] == 20480


def test_texture_image_on_a_vertex_coloured_backend_is_refused_with_the_reason() -> None:
    result = finish(_sample(texture="image"), Asset(mesh=_sphere(), metadata={"backend": "x"}))
    assert isinstance(result, Unprocessable) and "texture=vertex" in result.message


def test_silhouette_texture_has_no_background_at_the_rim() -> None:
    from gen3d.serve.backends.silhouette import inflate

    # A red disc on a green background: the texture must hold no green.
    yy, xx = np.mgrid[0:200, 0:200]
    mask = (yy - 100) ** 2 + (xx - 100) ** 2 < 70**2
    image = np.zeros((200, 200, 3), np.uint8)
    image[mask] = [255, 0, 0]
    image[~mask] = [0, 255, 0]
    mesh = inflate(image, mask, 64, 0.5, texture_size=512)
    assert mesh.texture.shape == (512, 512, 3)
    assert mesh.texture[:, :, 1].max() < 40  # resampling may blur; no background colour
    assert 0.0 <= mesh.uv.min() and mesh.uv.max() <= 1.0
