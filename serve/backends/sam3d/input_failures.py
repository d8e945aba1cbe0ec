"""Upstream failures caused by the client's mask, told apart from server faults.

SAM 3D Objects reduces over the masked pixels after resizing the mask to its pointmap
(data/dataset/tdfy/img_and_mask_transforms.py:540-550 at cf066761:
`mask_points.isfinite().max()` after a NEAREST resize). When nothing of the mask survives
(a thin or tiny mask, or an object cut off by the frame and then by upstream's crop),
torch or numpy raise a reduction-over-nothing error deep inside upstream. Upstream's
issues report the family: facebookresearch/sam-3d-objects#168 ("max(): Expected reduction
dim to be specified for input.numel() == 0" in ObjectCentricSSI._compute_scale_and_shift)
and #70 ("min(): Expected reduction dim 0 to have non-zero size"). These are the client's
input, so they become a 422 that names the likely cause; anything else stays a 500.
"""

from __future__ import annotations

import re

import numpy as np

from gen3d.serve.errors import Unprocessable

# torch: "max(): Expected reduction dim to be specified for input.numel() == 0 ...",
# "min(): Expected reduction dim 0 to have non-zero size."; numpy: "zero-size array to
# reduction operation maximum which has no identity"
EMPTY_REDUCTION = re.compile(
    r"Expected reduction dim .*(numel\(\) == 0|non-zero size)"
    r"|zero-size array to reduction operation",
)
# Below these a mask likely vanishes in upstream's resize (its pointmap is coarser than
# the photo): a mask this many pixels wide at its thickest, or this share of the photo.
THIN_PX = 4
SMALL_FRACTION = 0.001


def is_empty_reduction(exc: BaseException) -> bool:
    """True when exc, or an exception it was raised from, is a reduction over nothing."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, RuntimeError | IndexError | ValueError) and EMPTY_REDUCTION.search(
            str(current)
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


def thickness_px(mask: np.ndarray, limit: int = THIN_PX + 1) -> int:
    """How many 3x3 erosions the mask survives (its half-width at the thickest), capped."""
    current = mask.astype(bool)
    for n in range(limit):
        if not current.any():
            return n
        padded = np.pad(current, 1)
        eroded = np.ones_like(current)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                eroded &= padded[dy : dy + current.shape[0], dx : dx + current.shape[1]]
        current = eroded
    return limit


def likely_causes(mask: np.ndarray) -> list[str]:
    """What about this mask makes upstream's reduction run over nothing, most likely first."""
    mask = mask.astype(bool)
    causes = []
    width = 2 * thickness_px(mask)  # n erosions survived: fewer than 2n + 1 px across
    if width <= THIN_PX:
        causes.append(f"the mask is too thin (at most {width} px across)")
    area = int(mask.sum())
    if area < SMALL_FRACTION * mask.size:
        causes.append(
            f"the mask is too small ({area} px, {100 * area / mask.size:.3f}% of the image)"
        )
    edges = [
        name
        for name, line in (
            ("top", mask[0]),
            ("bottom", mask[-1]),
            ("left", mask[:, 0]),
            ("right", mask[:, -1]),
        )
        if line.any()
    ]
    if edges:
        causes.append(f"the mask touches the frame ({', '.join(edges)} edge)")
    return causes


def as_input_error(exc: BaseException, mask: np.ndarray) -> Unprocessable | None:
    """A 422 naming the likely cause, for upstream's input-dependent failures; else None."""
    if not is_empty_reduction(exc):
        return None
    causes = likely_causes(mask) or ["too few of the mask's pixels survive upstream's resizing"]
    return Unprocessable(
        "SAM 3D Objects found no usable object pixels in this mask: likely "
        + "; ".join(causes)
        + ". Send a solid mask of the whole object, several pixels wide, inside the photo."
    )
