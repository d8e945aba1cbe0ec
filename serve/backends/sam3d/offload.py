"""GEN3D_STAGE_OFFLOAD: keep SAM 3D's stages in host memory, one on the GPU at a time.

What each pipeline stage reads, after upstream at cf066761 (the contract JSON records
it from the source: tests/fixtures/sam3d_upstream_contract.json):

- compute_pointmap uses `depth_model`, a plain class (pipeline/depth_models/base.py)
  that holds the MoGe nn.Module at `depth_model.model`;
- the mesh decoder keeps its FlexiCubes grid in plain attributes that `Module.to()`
  never reaches: `mesh_extractor.reg_c` / `reg_v` (representations/mesh/cube2mesh.py:64;
  int64, (res^3, 8) and ((res+1)^3, 3) at res = 4 x resolution = 384 for the published
  slat_decoder_mesh.yaml: 4.65 GiB) and the FlexiCubes lookup tables under
  `mesh_extractor.mesh_extractor`. Those are moved here tensor by tensor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

log = logging.getLogger("gen3d.backend")

GIB = 1 << 30

# Pipeline method -> the nn.Modules it uses ("attr" or "attr.key" on the pipeline).
STAGES: dict[str, tuple[str, ...]] = {
    "compute_pointmap": ("depth_model.model",),
    "sample_sparse_structure": (
        "models.ss_generator",
        "models.ss_decoder",
        "condition_embedders.ss_condition_embedder",
    ),
    "sample_slat": ("models.slat_generator", "condition_embedders.slat_condition_embedder"),
    "decode_slat": (
        "models.slat_decoder_mesh",
        "models.slat_decoder_gs",
        "models.slat_decoder_gs_4",
    ),
}
# Pipeline method -> plain objects whose tensor attributes that stage needs on the GPU.
PLAIN_TENSOR_HOLDERS: dict[str, tuple[str, ...]] = {
    "decode_slat": (
        "models.slat_decoder_mesh.mesh_extractor",
        "models.slat_decoder_mesh.mesh_extractor.mesh_extractor",
    ),
}


def lookup(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if obj is None:
            return None
        if isinstance(obj, dict | torch.nn.ModuleDict):
            obj = obj[part] if part in obj else None
        else:
            obj = getattr(obj, part, None)
    return obj


def _tensor_attributes(holder: Any) -> dict[str, torch.Tensor]:
    return {k: v for k, v in vars(holder).items() if isinstance(v, torch.Tensor)}


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


@dataclass
class Stage:
    modules: list[torch.nn.Module] = field(default_factory=list)
    holders: list[Any] = field(default_factory=list)

    def move(self, device: torch.device | str) -> None:
        for module in self.modules:
            module.to(device)
        for holder in self.holders:
            for name, tensor in _tensor_attributes(holder).items():
                setattr(holder, name, tensor.to(device))

    def nbytes(self) -> int:
        total = 0
        for module in self.modules:
            total += sum(_nbytes(p) for p in module.parameters())
            total += sum(_nbytes(b) for b in module.buffers())
        for holder in self.holders:
            total += sum(_nbytes(t) for t in _tensor_attributes(holder).values())
        return total

    def plain_tensor_bytes(self) -> int:
        return sum(_nbytes(t) for h in self.holders for t in _tensor_attributes(h).values())


class StageOffload:
    """Keep SAM 3D's stages on the CPU; move a stage's modules and plain tensors to the
    GPU only while its pipeline method runs. Peak GPU memory becomes the largest stage
    plus activations instead of all stages at once. Costs one host<->device copy of each
    stage per request. Upstream still loads every checkpoint straight onto the GPU, so
    the load itself needs the full amount briefly."""

    def __init__(self, pipeline: Any, device: torch.device, stages: dict[str, Stage]):
        self.pipeline = pipeline
        self.device = device
        self.stages = stages

    @classmethod
    def attach(cls, pipeline: Any, device: torch.device, park: str = "cpu") -> StageOffload | None:
        stages: dict[str, Stage] = {}
        for method, paths in STAGES.items():
            stage = Stage(
                modules=[
                    m
                    for m in (lookup(pipeline, p) for p in paths)
                    if isinstance(m, torch.nn.Module)
                ],
                holders=[
                    h
                    for h in (lookup(pipeline, p) for p in PLAIN_TENSOR_HOLDERS.get(method, ()))
                    if h is not None and not isinstance(h, torch.nn.Module)
                ],
            )
            if (stage.modules or stage.holders) and callable(getattr(pipeline, method, None)):
                stages[method] = stage
        if not stages:
            return None
        offload = cls(pipeline, device, stages)
        for method, stage in stages.items():
            stage.move(park)
            setattr(pipeline, method, offload._wrap(getattr(pipeline, method), stage, park))
        _release_cuda()
        log.info(
            "sam3d stage offload on: %s",
            ", ".join(f"{m} {s.nbytes() / GIB:.2f} GiB" for m, s in stages.items()),
        )
        return offload

    def stage_bytes(self) -> dict[str, int]:
        """Bytes each stage moves: parameters, buffers and plain-attribute tensors."""
        return {m: s.nbytes() for m, s in self.stages.items()}

    def _wrap(self, method: Callable[..., Any], stage: Stage, park: str) -> Callable[..., Any]:
        def run_on_device(*args: Any, **kwargs: Any) -> Any:
            stage.move(self.device)
            try:
                return method(*args, **kwargs)
            finally:
                stage.move(park)
                _release_cuda()

        run_on_device.__wrapped__ = method  # type: ignore[attr-defined]
        return run_on_device


def _release_cuda() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
