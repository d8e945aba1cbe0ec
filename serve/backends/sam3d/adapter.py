"""`sam3d`: a thin adapter over SAM 3D Objects (Meta), for the GPU image flavor.

Upstream's public API is `notebook/inference.py`'s `Inference(config_path, compile=False)`
and `out = inference(image, mask, seed=...)`. This module imports it lazily, from
  1. <model_dir>/sam-3d-objects/notebook/inference.py (a source checkout in the artifact), or
  2. the checkout that the importable `sam3d_objects` package lives in (upstream installs
     itself editable, `pip install -e .`, so notebook/ sits next to the package).
Before the import it forces the model hubs offline and points their caches into the
model dir (upstream fetches DINOv2 via torch.hub and MoGe via Hugging Face at load):

  <model_dir>/checkpoints/hf/pipeline.yaml  (or <model_dir>/pipeline.yaml) + checkpoints
  <model_dir>/caches/torch                   -> TORCH_HOME
  <model_dir>/caches/huggingface             -> HF_HOME

Options map to upstream's pipeline.run arguments: stage1_inference_steps,
stage2_inference_steps, decode_formats ("mesh", "gaussian"). `Inference.__call__` does
not take them, so when any is given (or the request wants only a PLY, where decoding
the mesh is wasted work) the adapter calls `inference._pipeline.run` with the same
arguments the notebook passes plus those. GEN3D_STAGE_OFFLOAD keeps every stage on the
CPU except the one running (see StageOffload).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from gen3d.serve import request_options
from gen3d.serve.assets import Asset
from gen3d.serve.backends.base import Sample, synthetic_sample
from gen3d.serve.backends.device import resolve_device
from gen3d.serve.backends.sam3d.output import output_to_asset
from gen3d.serve.errors import ArtifactError, Unprocessable

if TYPE_CHECKING:
    from gen3d.serve.settings import Settings

log = logging.getLogger("gen3d.backend")

CONFIG_CANDIDATES = ("checkpoints/hf/pipeline.yaml", "pipeline.yaml")
SOURCE_DIR = "sam-3d-objects"
CACHE_DIRS = {"TORCH_HOME": "caches/torch", "HF_HOME": "caches/huggingface"}
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
DECODE_FORMATS = ("mesh", "gaussian")
MAX_STEPS = 200
# Upstream bakes textures (pipeline.run(with_texture_baking=True)) with nvdiffrast, which
# needs a CUDA build at image-build time and is not in container/requirements-sam3d.txt.
TEXTURE_REFUSAL = (
    "option texture=image is not available on backend 'sam3d': upstream's texture baking "
    "needs nvdiffrast, which this image does not have; use texture=vertex"
)
UPSTREAM_MODULE_NAME = "gen3d_sam3d_notebook_inference"

# The arguments notebook/inference.py's Inference.__call__ passes to pipeline.run.
NOTEBOOK_RUN_ARGS: dict[str, Any] = {
    "stage1_only": False,
    "with_mesh_postprocess": False,
    "with_texture_baking": False,
    "with_layout_postprocess": True,
    "use_vertex_color": True,
}

# Pipeline method -> the modules it uses ("attr" or "attr.key" on the pipeline object),
# after upstream's InferencePipeline / InferencePipelinePointMap.
STAGES: dict[str, tuple[str, ...]] = {
    "compute_pointmap": ("depth_model",),
    "sample_sparse_structure": (
        "models.ss_generator",
        "models.ss_decoder",
        "models.ss_encoder",
        "condition_embedders.ss_condition_embedder",
    ),
    "sample_slat": ("models.slat_generator", "condition_embedders.slat_condition_embedder"),
    "decode_slat": (
        "models.slat_decoder_mesh",
        "models.slat_decoder_gs",
        "models.slat_decoder_gs_4",
    ),
}


class Sam3DBackend:
    name = "sam3d"
    needs_mask = True
    options = frozenset({"stage1_inference_steps", "stage2_inference_steps", "decode_formats"})

    def __init__(self) -> None:
        self.max_batch_size = 1  # upstream runs one image at a time
        self._inference: Any = None
        self.offload: StageOffload | None = None
        self.config_path: Path | None = None

    def load(self, model_dir: Path, settings: Settings) -> None:
        from gen3d.serve.artifact.manifest import verify

        # A packaged artifact (gen3d package) is checked file by file before upstream
        # reads any of it; a plain directory without a manifest loads as before.
        verify(model_dir, self.name)
        self.config_path = find_pipeline_config(model_dir)
        device = resolve_device(settings.device)
        if device.type != "cuda":
            log.warning("sam3d: no CUDA device; SAM 3D Objects itself requires one")
        if settings.precision != "auto":
            log.warning(
                "sam3d: GEN3D_PRECISION=%s is not applied; pipeline.yaml's dtype decides",
                settings.precision,
            )
        force_offline_hubs(model_dir)
        inference_cls = import_upstream(model_dir).Inference
        start = time.perf_counter()
        self._inference = inference_cls(str(self.config_path), compile=False)
        log.info("sam3d loaded %s in %.1f s", self.config_path, time.perf_counter() - start)
        if settings.stage_offload:
            pipeline = getattr(self._inference, "_pipeline", None)
            self.offload = StageOffload.attach(pipeline, device) if pipeline else None
            if self.offload is None:
                log.warning("sam3d: upstream exposes no stages; GEN3D_STAGE_OFFLOAD ignored")

    def warmup(self) -> None:
        start = time.perf_counter()
        (result,) = self.predict([synthetic_sample(256)])
        if isinstance(result, Exception):
            raise RuntimeError(f"sam3d warm-up failed: {result}") from result
        log.info("warm-up sam3d batch=1 took %.1f ms", 1000 * (time.perf_counter() - start))

    def modules(self) -> dict[str, torch.nn.Module]:
        pipeline = getattr(self._inference, "_pipeline", None)
        found: dict[str, torch.nn.Module] = {}
        for paths in STAGES.values():
            for path in paths:
                module = _lookup(pipeline, path)
                if isinstance(module, torch.nn.Module):
                    found[path.split(".")[-1]] = module
        return found

    def predict(self, batch: list[Sample]) -> list[Asset | Exception]:
        results: list[Asset | Exception] = []
        for sample in batch:
            try:
                results.append(self._one(sample))
            except torch.cuda.OutOfMemoryError:
                raise  # the batcher splits / answers 503 capacity
            except Exception as exc:
                log.warning("sam3d failed on a sample: %s", exc)
                results.append(exc)
        return results

    def _one(self, sample: Sample) -> Asset:
        if self._inference is None:
            raise RuntimeError("the sam3d backend is not loaded")
        if sample.mask is None:
            raise Unprocessable("the sam3d backend needs a mask")
        if not sample.mask.any():
            raise Unprocessable("the mask is empty")
        if request_options.parse(sample.options).texture == "image":
            raise Unprocessable(TEXTURE_REFUSAL)  # before the model runs: no GPU time spent
        run_kwargs = upstream_run_options(sample.options, sample.format)
        start = time.perf_counter()
        if run_kwargs:
            pipeline = getattr(self._inference, "_pipeline", None)
            if pipeline is None or not hasattr(pipeline, "run"):
                raise Unprocessable(
                    "this SAM 3D Objects build hides its pipeline; options "
                    f"{', '.join(sorted(run_kwargs))} are not available"
                )
            rgba = np.concatenate(
                [sample.image[..., :3], sample.mask.astype(np.uint8)[..., None] * 255], axis=-1
            )
            out = pipeline.run(rgba, None, sample.seed, **NOTEBOOK_RUN_ARGS, **run_kwargs)
        else:
            out = self._inference(sample.image, sample.mask, seed=sample.seed)
        elapsed = time.perf_counter() - start
        asset = output_to_asset(out)
        asset.metadata.update(
            backend=self.name,
            seed=sample.seed,
            stage1_inference_steps=run_kwargs.get("stage1_inference_steps"),
            stage2_inference_steps=run_kwargs.get("stage2_inference_steps"),
            decode_formats=run_kwargs.get("decode_formats", list(DECODE_FORMATS)),
            stage_offload=self.offload is not None,
            model_seconds=round(elapsed, 3),
        )
        if sample.format in ("glb", "obj") and asset.mesh is None:
            raise Unprocessable(f"format {sample.format!r} needs a mesh; SAM 3D returned none")
        if sample.format == "ply" and asset.splat is None:
            raise Unprocessable("format 'ply' needs a Gaussian splat; SAM 3D returned none")
        return asset


# -- options -----------------------------------------------------------------------------


def upstream_run_options(options: Any, fmt: str) -> dict[str, Any]:
    """Request options -> pipeline.run keyword arguments (empty: use Inference.__call__)."""
    kwargs: dict[str, Any] = {}
    for key in ("stage1_inference_steps", "stage2_inference_steps"):
        value = options.get(key) if options else None
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_STEPS:
            raise Unprocessable(f"option {key!r} must be an integer in [1, {MAX_STEPS}]")
        kwargs[key] = value
    formats = options.get("decode_formats") if options else None
    if formats is not None:
        if isinstance(formats, str):
            formats = [formats]
        if (
            not isinstance(formats, list)
            or not formats
            or any(f not in DECODE_FORMATS for f in formats)
        ):
            raise Unprocessable(
                f"option 'decode_formats' must be a non-empty list of {DECODE_FORMATS}"
            )
        # Upstream builds the GLB from the mesh *and* the Gaussians (to_glb takes both).
        if "mesh" in formats and "gaussian" not in formats:
            raise Unprocessable(
                "decode_formats 'mesh' needs 'gaussian' too (upstream's GLB uses both)"
            )
        if fmt in ("glb", "obj") and "mesh" not in formats:
            raise Unprocessable(f"format {fmt!r} needs decode_formats to include 'mesh'")
        if fmt == "ply" and "gaussian" not in formats:
            raise Unprocessable("format 'ply' needs decode_formats to include 'gaussian'")
        kwargs["decode_formats"] = list(dict.fromkeys(formats))
    elif fmt == "ply":
        kwargs["decode_formats"] = ["gaussian"]  # skip the mesh decoder: nobody reads it
    return kwargs


# -- loading -----------------------------------------------------------------------------


def find_pipeline_config(model_dir: Path) -> Path:
    for rel in CONFIG_CANDIDATES:
        if (model_dir / rel).is_file():
            return model_dir / rel
    raise ArtifactError(
        f"no SAM 3D Objects config in {model_dir}: expected "
        + " or ".join(str(model_dir / rel) for rel in CONFIG_CANDIDATES)
    )


def force_offline_hubs(model_dir: Path) -> dict[str, str]:
    """Set the hub variables for this process (before upstream is imported)."""
    env = dict(OFFLINE_ENV)
    for var, rel in CACHE_DIRS.items():
        env[var] = str(model_dir / rel)
        if not (model_dir / rel).is_dir():
            log.warning("sam3d: %s (%s) is missing; offline loads from it will fail", rel, var)
    os.environ.update(env)
    return env


def find_upstream_source(model_dir: Path) -> Path:
    """notebook/inference.py of the SAM 3D Objects checkout to use."""
    candidates = [model_dir / SOURCE_DIR / "notebook" / "inference.py"]
    spec = importlib.util.find_spec("sam3d_objects")  # locates, does not import
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).resolve().parents[1] / "notebook" / "inference.py")
    for path in candidates:
        if path.is_file():
            return path
    raise ArtifactError(
        "SAM 3D Objects is not installed: no "
        + " or ".join(str(p) for p in candidates)
        + " (the sam3d backend runs only in the GPU image flavor that carries it)"
    )


def import_upstream(model_dir: Path) -> ModuleType:
    """Import notebook/inference.py (it is a script directory, not a package)."""
    if UPSTREAM_MODULE_NAME in sys.modules:
        return sys.modules[UPSTREAM_MODULE_NAME]
    path = find_upstream_source(model_dir)
    repo = str(path.parents[1])
    if repo not in sys.path:  # inference.py does `import sam3d_objects`
        sys.path.insert(0, repo)
    spec = importlib.util.spec_from_file_location(UPSTREAM_MODULE_NAME, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[UPSTREAM_MODULE_NAME] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        del sys.modules[UPSTREAM_MODULE_NAME]
        raise
    if not hasattr(module, "Inference"):
        raise ArtifactError(f"{path} has no Inference class")
    return module


# -- stage offload -----------------------------------------------------------------------


def _lookup(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if obj is None:
            return None
        if isinstance(obj, dict | torch.nn.ModuleDict):
            obj = obj[part] if part in obj else None
        else:
            obj = getattr(obj, part, None)
    return obj


class StageOffload:
    """Keep SAM 3D's stage modules on the CPU; move a stage's modules to the GPU only
    while its pipeline method runs. Peak GPU memory becomes the largest stage plus
    activations instead of all stages at once (users report 24 GB cards work this way;
    upstream asks for 32 GB). Costs one host<->device copy of each stage per request.
    Upstream still loads every checkpoint straight onto the GPU first, so the load
    itself needs the full amount briefly."""

    def __init__(
        self, pipeline: Any, device: torch.device, stages: dict[str, list[torch.nn.Module]]
    ):
        self.pipeline = pipeline
        self.device = device
        self.stages = stages

    @classmethod
    def attach(cls, pipeline: Any, device: torch.device, park: str = "cpu") -> StageOffload | None:
        stages: dict[str, list[torch.nn.Module]] = {}
        for method, paths in STAGES.items():
            modules = [
                m for m in (_lookup(pipeline, p) for p in paths) if isinstance(m, torch.nn.Module)
            ]
            if modules and callable(getattr(pipeline, method, None)):
                stages[method] = modules
        if not stages:
            return None
        offload = cls(pipeline, device, stages)
        for method, modules in stages.items():
            for module in modules:
                module.to(park)
            setattr(pipeline, method, offload._wrap(getattr(pipeline, method), modules, park))
        _release_cuda()
        log.info("sam3d stage offload on: %s", ", ".join(stages))
        return offload

    def _wrap(
        self, method: Callable[..., Any], modules: Iterable[torch.nn.Module], park: str
    ) -> Callable[..., Any]:
        modules = list(modules)

        def run_on_device(*args: Any, **kwargs: Any) -> Any:
            for module in modules:
                module.to(self.device)
            try:
                return method(*args, **kwargs)
            finally:
                for module in modules:
                    module.to(park)
                _release_cuda()

        run_on_device.__wrapped__ = method  # type: ignore[attr-defined]
        return run_on_device


def _release_cuda() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
