"""The request every suite sends, and the Sample the server decodes from it.

One fixed photo (a gradient with texture) and an off-centre ellipse mask, so the
in-process reference and the served requests do exactly the same model work.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import replace

import numpy as np
from PIL import Image

from gen3d.serve.backends import synthetic
from gen3d.serve.backends.base import Sample

IMAGE_SIZE = 256


def photo_and_mask(size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    return synthetic.photo_and_mask(size, seed=1234, ellipse=(0.46, 0.54, 0.32, 0.26))


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def rgba_png(size: int = IMAGE_SIZE) -> bytes:
    """SAM 3D's convention and the server's main path: RGB photo, alpha = mask."""
    image, mask = photo_and_mask(size)
    return _png(np.dstack([image, mask.astype(np.uint8) * 255]))


def large_rgba_png(side: int = 4096) -> bytes:
    """A side x side RGBA PNG of a smooth photo whose alpha is a disc: large in pixels,
    small on the wire (about 90 kB at 4096), for memory measurements."""
    image, mask = synthetic.photo_and_mask(side, ellipse=(0.5, 0.5, 1 / 3, 1 / 3), noise=False)
    return _png(np.dstack([image, mask.astype(np.uint8) * 255]))


def json_body(size: int = IMAGE_SIZE, seed: int = 0, options: dict | None = None) -> bytes:
    """The JSON form, which both our server and the LitServe peer accept."""
    image, mask = photo_and_mask(size)
    body = {
        "image": base64.b64encode(_png(image)).decode(),
        "mask": base64.b64encode(_png(mask.astype(np.uint8) * 255)).decode(),
        "seed": seed,
    }
    if options:
        body["options"] = options
    return json.dumps(body).encode()


def sample(size: int = IMAGE_SIZE, seed: int = 0) -> Sample:
    image, mask = photo_and_mask(size)
    return Sample(image=image, mask=mask, seed=seed, format="glb")


def batch(size: int, image_size: int = IMAGE_SIZE) -> list[Sample]:
    """`size` samples of the same photo with distinct seeds (as distinct requests are)."""
    base = sample(image_size)
    return [replace(base, seed=i) for i in range(size)]
