"""The one synthetic photo + object mask: warm-up, benchmarks, drift checks and tests all
draw their inputs here, so they exercise the same kind of image."""

from __future__ import annotations

import numpy as np

# centre x, centre y, radius x, radius y, as fractions of the width and height:
# off-centre and not round, so flips and transposes show in the output
DEFAULT_ELLIPSE = (0.45, 0.55, 0.30, 0.20)


def photo_and_mask(
    size: int = 96,
    seed: int = 0,
    *,
    width: int | None = None,
    ellipse: tuple[float, float, float, float] = DEFAULT_ELLIPSE,
    noise: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """A gradient photo with seeded noise in blue, (size, width, 3) uint8, and an
    elliptical object mask, (size, width) bool. `noise=False`: a flat blue, so a large
    photo compresses to a small PNG (memory tests send 4096^2 images in under 1 MB)."""
    height, width = size, width or size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    blue = rng.integers(0, 256, (height, width)) if noise else np.full((height, width), 128)
    image = np.stack([xx * 255 // width, yy * 255 // height, blue], -1).astype(np.uint8)
    cx, cy, rx, ry = ellipse
    mask = ((xx - cx * width) / (rx * width)) ** 2 + ((yy - cy * height) / (ry * height)) ** 2
    return image, mask <= 1
