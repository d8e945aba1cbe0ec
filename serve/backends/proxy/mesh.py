"""Pre- and post-processing of the proxy backend (CPU, per sample, numpy).

Input: the photo is cropped to a square around the mask and resized to the encoder's
side (RGB + mask channels), like SAM 3D's object crop. Output: the network's occupancy
logits are normalised per sample and added, at a fixed weight, to an inflated-silhouette
prior, then marching cubes gives the mesh. The prior keeps the surface closed and
object-sized (random weights alone would give noise); the network still moves every
vertex, so seed and input reach the geometry. None of this is a quality claim.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import measure

from gen3d.serve.errors import Unprocessable
from gen3d.serve.outputs.assets import GaussianSplat, Mesh
from gen3d.serve.outputs.geometry import image_axes_to_gltf, to_unit_box, wound_outwards

NETWORK_WEIGHT = 0.12  # amplitude of the network's contribution, in half-extent units
PRIOR_THICKNESS = 0.5  # half-thickness of the prior at its deepest point
CROP_MARGIN = 0.1


@dataclass(frozen=True)
class Crop:
    """Square window (top, left, side) in photo pixels; may extend past the photo."""

    top: int
    left: int
    side: int


def square_crop(mask: np.ndarray) -> Crop:
    if mask is None or not mask.any():
        raise Unprocessable("the mask is empty")
    rows, cols = np.nonzero(mask)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    side = int(np.ceil(max(bottom - top, right - left) * (1 + 2 * CROP_MARGIN)))
    side = max(side, 2)
    cy, cx = (top + bottom) / 2, (left + right) / 2
    return Crop(top=round(cy - side / 2), left=round(cx - side / 2), side=side)


def _window(array: np.ndarray, crop: Crop) -> np.ndarray:
    """array[top:top+side, left:left+side], zero-padded where it leaves the photo."""
    h, w = array.shape[:2]
    out = np.zeros((crop.side, crop.side, *array.shape[2:]), array.dtype)
    y0, x0 = max(crop.top, 0), max(crop.left, 0)
    y1, x1 = min(crop.top + crop.side, h), min(crop.left + crop.side, w)
    if y1 > y0 and x1 > x0:
        out[y0 - crop.top : y1 - crop.top, x0 - crop.left : x1 - crop.left] = array[y0:y1, x0:x1]
    return out


def encoder_input(image: np.ndarray, mask: np.ndarray, crop: Crop, side: int) -> np.ndarray:
    """(4, side, side) float32: RGB in [-1, 1] masked to the object, then the mask."""
    rgb = Image.fromarray(_window(image[..., :3], crop)).resize((side, side), Image.BILINEAR)
    alpha = Image.fromarray(_window(mask.astype(np.uint8) * 255, crop)).resize(
        (side, side), Image.BILINEAR
    )
    m = np.asarray(alpha, np.float32) / 255.0
    x = (np.asarray(rgb, np.float32) / 127.5 - 1.0) * m[..., None]
    return np.concatenate([x.transpose(2, 0, 1), m[None]], axis=0)


def silhouette_prior(mask: np.ndarray, crop: Crop, resolution: int) -> np.ndarray:
    """Signed field (y, x, z) on a resolution^3 grid spanning [-1, 1]^3, > 0 inside: an
    inflated silhouette h(x, y) - |z| with a circular profile towards the rim."""
    window = _window(mask.astype(np.float32), crop)
    coverage = np.asarray(
        Image.fromarray(window).resize((resolution, resolution), Image.BILINEAR), np.float32
    )
    inside = coverage > 0.5
    if not inside.any():
        raise Unprocessable("the mask is too small for the occupancy grid")
    cell = 2.0 / resolution
    dist_in = ndimage.distance_transform_edt(inside) * cell
    dist_out = ndimage.distance_transform_edt(~inside) * cell
    signed = np.where(inside, dist_in, -dist_out)
    dmax = float(signed.max())
    ratio = np.clip(signed / dmax, 0.0, 1.0)
    height = np.where(inside, PRIOR_THICKNESS * np.sqrt(1.0 - (1.0 - ratio) ** 2), signed)
    z = (np.arange(resolution, dtype=np.float32) + 0.5) * cell - 1.0
    return (height[:, :, None] - np.abs(z)[None, None, :]).astype(np.float32)


def occupancy_field(prior: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """prior + NETWORK_WEIGHT * tanh(per-sample standardised logits); logits are (y, x, z)
    like the prior (the decoder's axes are read in that order)."""
    std = float(logits.std())
    z = (logits - float(logits.mean())) / (std if std > 0 else 1.0)
    return prior + NETWORK_WEIGHT * np.tanh(z).astype(np.float32)


def extract_mesh(field: np.ndarray, image: np.ndarray, crop: Crop) -> Mesh:
    """Marching cubes at 0, vertex colours from the photo, our axis convention."""
    resolution = field.shape[0]
    padded = np.pad(field, 1, constant_values=-1.0)  # closes the surface at the box
    if padded.max() <= 0:
        raise Unprocessable("the occupancy field has no inside: nothing to mesh")
    verts, faces, _, _ = measure.marching_cubes(padded, level=0.0, allow_degenerate=False)
    if len(faces) == 0:
        raise Unprocessable("marching cubes found no surface")
    grid = verts - 1.0  # undo the padding: grid index space of `field`
    # Colour: a vertex's (x, y) grid position maps back to a pixel of the crop window.
    px = crop.left + (grid[:, 1] + 0.5) * crop.side / resolution
    py = crop.top + (grid[:, 0] + 0.5) * crop.side / resolution
    px = np.clip(np.rint(px).astype(int), 0, image.shape[1] - 1)
    py = np.clip(np.rint(py).astype(int), 0, image.shape[0] - 1)
    colors = image[py, px, :3]
    # grid axes: row = y down, col = x right, z towards the camera
    xyz = to_unit_box(image_axes_to_gltf(grid[:, 1], grid[:, 0], grid[:, 2]))
    return Mesh(vertices=xyz, faces=wound_outwards(xyz, faces), vertex_colors=colors)


def splat_from_mesh(mesh: Mesh, resolution: int) -> GaussianSplat:
    """One isotropic Gaussian per surface vertex, sized like a grid cell."""
    return GaussianSplat.from_points(mesh.vertices, mesh.vertex_colors, scale=0.5 / resolution)
