"""Silhouette geometry, checked on files read back by independent readers."""

import io

import numpy as np
import pytest
import trimesh
from gen3d_testing import glb_json, photo_and_mask
from plyfile import PlyData

from gen3d.serve.backends.base import Sample
from gen3d.serve.backends.silhouette import MAX_FACES, SilhouetteBackend
from gen3d.serve.errors import Unprocessable
from gen3d.serve.outputs.assets import SPLAT_PROPERTIES
from gen3d.serve.outputs.encoding import encode_asset


def run(sample: Sample):
    (result,) = SilhouetteBackend().predict([sample])
    assert not isinstance(result, Exception), result
    return result


@pytest.fixture(scope="module")
def asset():
    image, mask = photo_and_mask(160)
    return run(Sample(image=image, mask=mask, seed=3, format="ply"))


def load_glb(data: bytes) -> trimesh.Trimesh:
    return trimesh.load(io.BytesIO(data), file_type="glb", force="mesh", process=False)


def test_glb_is_a_closed_outward_mesh_with_vertex_colours(asset) -> None:
    mesh = load_glb(encode_asset(asset, "glb"))
    merged = mesh.copy()
    merged.merge_vertices()
    assert merged.is_watertight and merged.is_winding_consistent
    assert merged.volume > 0  # outward normals give a positive volume
    assert len(mesh.faces) == asset.metadata["faces"] <= MAX_FACES
    colors = mesh.visual.vertex_colors
    assert colors.shape == (len(mesh.vertices), 4) and len(np.unique(colors[:, 0])) > 10


def test_unit_sized_centred_and_y_up(asset) -> None:
    v = asset.mesh.vertices
    lo, hi = v.min(0), v.max(0)
    assert np.allclose((lo + hi) / 2, 0, atol=1e-5)
    assert np.isclose((hi - lo).max(), 1.0, atol=1e-5)
    # The ellipse mask is wider (0.6) than tall (0.4) and lies low in the image: y is up,
    # so the mesh is wider in x than in y, and symmetric front/back in z.
    assert (hi - lo)[0] > (hi - lo)[1] > (hi - lo)[2]
    assert np.isclose(lo[2], -hi[2], atol=1e-5)


def test_colours_come_from_the_photo_under_each_vertex() -> None:
    image, mask = photo_and_mask(120)
    image[:, :60] = (255, 0, 0)  # left half red, right half blue
    image[:, 60:] = (0, 0, 255)
    mesh = run(Sample(image=image, mask=mask)).mesh
    # The mask spans image columns 18..90 (72 wide, centre 54), so the red/blue edge at
    # column 60 lies at x = (60 - 54) / 72 = +0.083 in the unit-sized mesh.
    left = mesh.vertices[:, 0] < 0.06
    right = mesh.vertices[:, 0] > 0.11
    assert (mesh.vertex_colors[left, :3] == (255, 0, 0)).all()
    assert (mesh.vertex_colors[right, :3] == (0, 0, 255)).all()
    assert left.sum() > 100 and right.sum() > 100


def test_deterministic_for_input_and_seed() -> None:
    image, mask = photo_and_mask(100)
    a = encode_asset(run(Sample(image=image, mask=mask, seed=5, format="ply")), "ply")
    b = encode_asset(run(Sample(image=image, mask=mask, seed=5, format="ply")), "ply")
    c = encode_asset(run(Sample(image=image, mask=mask, seed=6, format="ply")), "ply")
    assert a == b and a != c
    glb1 = encode_asset(run(Sample(image=image, mask=mask, seed=5)), "glb")
    glb2 = encode_asset(run(Sample(image=image, mask=mask, seed=5)), "glb")
    assert glb1 == glb2


@pytest.mark.slow  # fine grids on big masks
def test_face_bound_holds_for_fine_grids_on_big_masks() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (1024, 1024, 3), dtype=np.uint8)
    mask = np.zeros((1024, 1024), bool)
    mask[100:900, 50:980] = True
    mask[400:600, 300:700] = False  # a hole: the mesh becomes a closed torus-like solid
    asset = run(Sample(image=image, mask=mask, options={"resolution": 512}))
    assert len(asset.mesh.faces) <= MAX_FACES
    mesh = trimesh.Trimesh(asset.mesh.vertices, asset.mesh.faces)
    assert mesh.is_watertight and mesh.euler_number == 0  # genus 1


def test_splat_ply_has_the_reference_layout(asset) -> None:
    ply = PlyData.read(io.BytesIO(encode_asset(asset, "ply")))
    vertex = ply["vertex"]
    assert [p.name for p in vertex.properties] == SPLAT_PROPERTIES
    assert vertex.count == 20_000
    xyz = np.stack([vertex["x"], vertex["y"], vertex["z"]], 1)
    assert np.abs(xyz).max() <= 0.5 + 1e-4
    quat = np.stack([vertex[f"rot_{i}"] for i in range(4)], 1)
    assert np.allclose(np.linalg.norm(quat, axis=1), 1)
    rgb = 0.5 + 0.28209479 * np.stack([vertex[f"f_dc_{i}"] for i in range(3)], 1)
    assert (rgb >= -1e-4).all() and (rgb <= 1 + 1e-4).all()


def test_glb_extras_carry_the_metadata(asset) -> None:
    doc = glb_json(encode_asset(asset, "glb"))
    extras = doc["asset"]["extras"]
    assert extras["backend"] == "silhouette" and extras["seed"] == 3
    assert doc["accessors"][2]["normalized"] is True  # COLOR_0 as normalised bytes


def test_obj_reads_back_with_colours(asset) -> None:
    mesh = trimesh.load(io.BytesIO(encode_asset(asset, "obj")), file_type="obj", process=False)
    assert len(mesh.faces) == len(asset.mesh.faces)
    assert mesh.visual.vertex_colors.shape[0] == len(mesh.vertices)


def test_the_splat_is_sampled_only_when_a_ply_is_asked_for() -> None:
    image, mask = photo_and_mask(48)
    assert run(Sample(image=image, mask=mask, format="glb")).splat is None
    assert run(Sample(image=image, mask=mask, format="ply")).splat is not None


@pytest.mark.parametrize(
    ("options", "message"),
    [({"resolution": 4}, "resolution"), ({"thickness": "thick"}, "thickness")],
)
def test_bad_option_values_fail_that_sample_only(options, message) -> None:
    image, mask = photo_and_mask(48)
    good = Sample(image=image, mask=mask)
    bad = Sample(image=image, mask=mask, options=options)
    results = SilhouetteBackend().predict([good, bad])
    assert not isinstance(results[0], Exception)
    assert isinstance(results[1], Unprocessable) and message in str(results[1])
