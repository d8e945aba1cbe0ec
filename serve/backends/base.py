"""The Backend protocol (docs/architecture.md) and the Sample a backend receives.

Backends never see HTTP; codecs never see tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from gen3d.serve.backends.synthetic import photo_and_mask
from gen3d.serve.outputs.assets import Asset

if TYPE_CHECKING:
    import torch

    from gen3d.serve.settings import Settings


@dataclass(frozen=True)
class Sample:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    mask: np.ndarray | None  # (H, W) bool; None only for backends with needs_mask False
    seed: int = 0
    format: str = "glb"
    options: Mapping[str, Any] = field(default_factory=dict)
    # Where the mask came from: "request" (mask part/field), "alpha" (the PNG's alpha),
    # or the automatic mask's source ("grabcut", "onnx"); None without a mask.
    mask_source: str | None = None


@runtime_checkable
class Backend(Protocol):
    name: str
    max_batch_size: int  # 1 for backends that cannot batch
    needs_mask: bool  # False: a photo alone is enough (JPEG/WebP requests allowed)
    options: frozenset[str]  # keys accepted in a request's "options"

    def load(self, model_dir: Path, settings: Settings) -> None: ...

    def warmup(self) -> None: ...

    def predict(self, batch: list[Sample]) -> list[Asset | Exception]: ...

    def modules(self) -> dict[str, torch.nn.Module]: ...


def synthetic_sample(size: int = 128, seed: int = 0, fmt: str = "glb") -> Sample:
    """A deterministic photo + disc mask (the same image for every seed), for warm-up
    and tests of the batch path."""
    image, mask = photo_and_mask(size, ellipse=(0.5, 0.5, 0.35, 0.35))
    return Sample(image=image, mask=mask, seed=seed, format=fmt)
