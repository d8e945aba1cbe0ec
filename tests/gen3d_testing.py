"""Helpers shared by the tests: real image files made in memory, independent readers."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
from PIL import Image


def photo_and_mask(size: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A textured photo and an off-centre ellipse mask (not symmetric, so flips show)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    image = np.stack([xx * 255 // size, yy * 255 // size, rng.integers(0, 256, (size, size))], -1)
    mask = ((xx - 0.45 * size) / (0.3 * size)) ** 2 + ((yy - 0.55 * size) / (0.2 * size)) ** 2 <= 1
    return image.astype(np.uint8), mask


def png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    return buffer.getvalue()


def rgba_png(size: int = 96, seed: int = 0) -> bytes:
    image, mask = photo_and_mask(size, seed)
    return png_bytes(np.dstack([image, mask.astype(np.uint8) * 255]))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def json_instance(size: int = 96, seed: int = 0, **extra: object) -> dict:
    image, mask = photo_and_mask(size, seed)
    return {
        "image": b64(png_bytes(image)),
        "mask": b64(png_bytes(mask.astype(np.uint8) * 255)),
        **extra,
    }


def glb_json(data: bytes) -> dict:
    """The JSON chunk of a GLB, parsed by pygltflib (an independent reader)."""
    import pygltflib

    gltf = pygltflib.GLTF2.load_from_bytes(data)
    return json.loads(gltf.to_json())
