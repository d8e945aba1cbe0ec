"""`silhouette`: a real, deterministic 3D preview from the mask alone (no weights, no torch).

The mask is inflated into a closed solid: inside the silhouette the half-thickness follows
a circular profile of the distance to the rim, h = H * sqrt(1 - (1 - d/dmax)^2), so the
rim meets the mirror plane at a vertical tangent (a smooth rim, no crease), and the
solid is mirrored about z = 0. Marching cubes on the signed field h(x, y) - |z| gives a
closed, consistently oriented surface. Vertices take the photo's colour at their (x, y).

Output convention (serve/outputs/assets.py): y up, x right, +z towards the camera, centred on
the bounding box, largest extent 1.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import measure

from gen3d.serve import request_options
from gen3d.serve.backends.base import Sample, synthetic_sample
from gen3d.serve.errors import Unprocessable
from gen3d.serve.outputs.assets import Asset, GaussianSplat, Mesh
from gen3d.serve.outputs.geometry import image_axes_to_gltf, to_unit_box, wound_outwards

if TYPE_CHECKING:
    import torch

    from gen3d.serve.settings import Settings

log = logging.getLogger("gen3d.backend")

MAX_FACES = 50_000
DEFAULT_RESOLUTION = 128  # grid cells along the mask's longer side
THICKNESS = 0.5  # half-thickness at the deepest point, as a fraction of dmax
SPLAT_POINTS = 20_000


class SilhouetteBackend:
    name = "silhouette"
    needs_mask = True
    options = frozenset({"resolution", "thickness", "splat_points"})

    def __init__(self) -> None:
        self.max_batch_size = 1

    def load(self, model_dir: Path, settings: Settings) -> None:
        # Nothing to load: the method is pure geometry, one sample at a time. A batch
        # would only be a loop (measured: the same samples/s at batch 1, 2 and 4), so
        # max_batch_size stays 1 and requests never wait for batch-mates.
        pass

    def warmup(self) -> None:
        start = time.perf_counter()
        self.predict([synthetic_sample(64)])
        log.info("warm-up silhouette batch=1 took %.1f ms", 1000 * (time.perf_counter() - start))

    def modules(self) -> dict[str, torch.nn.Module]:
        return {}

    def predict(self, batch: list[Sample]) -> list[Asset | Exception]:
        results: list[Asset | Exception] = []
        for sample in batch:
            try:
                results.append(self._one(sample))
            except Exception as exc:  # one sample fails alone; the batcher classifies it
                results.append(exc)
        return results

    def _one(self, sample: Sample) -> Asset:
        opts = sample.options
        resolution = _int_option(opts, "resolution", DEFAULT_RESOLUTION, 16, 512)
        thickness = _float_option(opts, "thickness", THICKNESS, 0.05, 2.0)
        n_points = _int_option(opts, "splat_points", SPLAT_POINTS, 0, 200_000)
        if sample.mask is None:
            raise Unprocessable("the silhouette backend needs a mask")
        common = request_options.parse(sample.options)
        texture_size = common.texture_size if common.texture == "image" else None
        mesh = inflate(sample.image, sample.mask, resolution, thickness, texture_size)
        # The splat is only worth sampling when it is what the client asked for.
        wants_splat = sample.format == "ply" and n_points > 0
        splat = sample_splat(mesh, n_points, sample.seed) if wants_splat else None
        metadata: dict[str, Any] = {
            "backend": self.name,
            "seed": sample.seed,
            "resolution": resolution,
            "vertices": len(mesh.vertices),
            "faces": len(mesh.faces),
        }
        if texture_size is not None:
            metadata["texture_size"] = texture_size
        return Asset(mesh=mesh, splat=splat, metadata=metadata)


def _int_option(opts: Any, key: str, default: int, low: int, high: int) -> int:
    value = opts.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Unprocessable(f"option {key!r} must be an integer in [{low}, {high}]")
    return value


def _float_option(opts: Any, key: str, default: float, low: float, high: float) -> float:
    value = opts.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise Unprocessable(f"option {key!r} must be a number in [{low}, {high}]")
    return float(value)


def inflate(
    image: np.ndarray,
    mask: np.ndarray,
    resolution: int,
    thickness: float,
    texture_size: int | None = None,
) -> Mesh:
    """Closed vertex-coloured mesh of the inflated silhouette (at most MAX_FACES faces).

    With `texture_size`, the photo over the mask's bounding box becomes a square
    texture of that side, mapped by planar projection along z: the front shows the
    photo, the back its mirror image, and the rim (where the surface turns edge-on)
    takes the rim pixels' colour; background pixels in the texture are replaced by the
    nearest object pixel's colour so none bleeds in at the rim. UVs are a function of
    (x, y) alone, so the map has no seam to split vertices along."""
    if not mask.any():
        raise Unprocessable("the mask is empty")
    rows, cols = np.nonzero(mask)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    crop = mask[top:bottom, left:right]
    while True:
        verts_px, faces = _surface(crop, resolution, thickness)
        if len(faces) <= MAX_FACES or resolution <= 16:
            break
        # Too fine: resample the grid coarser in proportion (faces scale with area).
        resolution = max(16, int(resolution * np.sqrt(MAX_FACES / len(faces)) * 0.95))
    # verts_px: (x, y, z) in crop pixels; colour from the photo at (top + y, left + x).
    px = np.clip(np.rint(verts_px[:, 0]).astype(int) + left, 0, image.shape[1] - 1)
    py = np.clip(np.rint(verts_px[:, 1]).astype(int) + top, 0, image.shape[0] - 1)
    colors = image[py, px, :3]
    xyz = to_unit_box(image_axes_to_gltf(verts_px[:, 0], verts_px[:, 1], verts_px[:, 2]))
    uv = texture = None
    if texture_size is not None:
        # Texel centres span the crop: u = (x + 0.5) / width with x in crop pixels.
        height, width = crop.shape
        uv = np.stack([(verts_px[:, 0] + 0.5) / width, (verts_px[:, 1] + 0.5) / height], 1)
        uv = np.clip(uv, 0.0, 1.0)
        # Seam-aware rim: pixels outside the mask take the nearest object pixel's colour,
        # so texels sampled at the rim (and the filter's reach past it) never show
        # background.
        nearest = ndimage.distance_transform_edt(~crop, return_distances=False, return_indices=True)
        cropped = image[top:bottom, left:right, :3][nearest[0], nearest[1]]
        photo = Image.fromarray(np.ascontiguousarray(cropped))
        texture = np.asarray(photo.resize((texture_size, texture_size), Image.LANCZOS))
    # Flipping y mirrors the solid, which turns every triangle's winding around.
    return Mesh(vertices=xyz, faces=faces[:, ::-1], vertex_colors=colors, uv=uv, texture=texture)


def _surface(crop: np.ndarray, resolution: int, thickness: float) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of h(x, y) - |z| on a grid of `resolution` cells along the long side.

    Returns vertices in crop pixel units (x, y, z) and faces wound outwards.
    """
    height, width = crop.shape
    step = max(height, width) / resolution  # crop pixels per grid cell
    gy = np.arange(0, height, step) + step / 2
    gx = np.arange(0, width, step) + step / 2
    # Box-filtered occupancy keeps thin parts alive better than point sampling.
    coverage = ndimage.zoom(crop.astype(np.float32), (len(gy) / height, len(gx) / width), order=1)
    inside = np.pad(coverage > 0.5, 2)
    if not inside.any():
        raise Unprocessable("the mask is too small to inflate")
    dist = ndimage.distance_transform_edt(inside)
    outside = ndimage.distance_transform_edt(~inside)
    signed = np.where(inside, dist - 0.5, -(outside - 0.5))  # zero level near the rim
    dmax = float(signed.max())
    depth = thickness * dmax
    ratio = np.clip(signed / dmax, 0.0, 1.0)
    profile = depth * np.sqrt(1.0 - (1.0 - ratio) ** 2)
    # Outside the mask h < 0 grows with distance, so the level set closes at the rim.
    h = np.where(signed > 0, profile, signed)
    nz = int(np.ceil(depth)) + 2
    z = np.arange(-nz, nz + 1, dtype=np.float32)
    field = h[:, :, None] - np.abs(z)[None, None, :]  # axes: (y, x, z), > 0 inside
    verts, faces, _, _ = measure.marching_cubes(field, level=0.0, allow_degenerate=False)
    # Grid index -> crop pixels; z in the same pixel units as x and y.
    y = (verts[:, 0] - 2) * step + step / 2
    x = (verts[:, 1] - 2) * step + step / 2
    zz = (verts[:, 2] - nz) * step
    verts_px = np.stack([x, y, zz], axis=1)
    faces = wound_outwards(verts_px, faces)
    return verts_px, faces


def sample_splat(mesh: Mesh, count: int, seed: int) -> GaussianSplat:
    """`count` area-uniform surface samples with interpolated vertex colours (seeded)."""
    rng = np.random.default_rng(seed)
    faces = mesh.faces.astype(np.int64)
    tri = mesh.vertices[faces].astype(np.float64)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    chosen = rng.choice(len(faces), size=count, p=area / area.sum())
    u, v = rng.random(count), rng.random(count)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    w = np.stack([1 - u - v, u, v], axis=1)
    points = np.einsum("ij,ijk->ik", w, tri[chosen])
    colors = np.einsum("ij,ijk->ik", w, mesh.vertex_colors[faces[chosen], :3].astype(np.float64))
    spacing = float(np.sqrt(area.sum() / max(count, 1)))
    return GaussianSplat.from_points(points, np.rint(colors).astype(np.uint8), scale=spacing / 2)
