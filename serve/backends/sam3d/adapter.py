"""`sam3d`: a thin adapter over SAM 3D Objects (Meta), for the sam3d image flavor.

Upstream's public API is `notebook/inference.py`'s `Inference(config_path, compile=False)`
whose `__call__` runs `inference._pipeline.run(rgba, None, seed, ...)`. This adapter
loads it through loading.py (CUDA check, import-time environment, attention backend and
autocast dtype from the GPU's compute capability, offline caches) and always calls
`_pipeline.run` itself, with the notebook's arguments plus:

- the inference steps of every stage on every call (the request's, else pipeline.yaml's):
  upstream overwrites the generators' `inference_steps` and restores them only when a
  stage succeeds, so after an out-of-memory the next request would inherit the failed
  one's steps (pipeline/inference_pipeline.py:656-718). They are also put back after
  each call;
- decode_formats ("mesh", "gaussian"). Upstream refines the pose from the GLB when
  pipeline.yaml names a layout post-optimisation (pipeline/inference_pipeline_pointmap.py
  :396-413); without a mesh its `assert glb is not None` fails inside a try that only
  logs, and the pose comes back unrefined. So the mesh is decoded whenever that step
  runs, whatever the answer's format: one pose per (input, seed). Only without it does
  a PLY request skip the mesh decoder.

Upstream failures caused by the mask (input_failures.py) are answered 422 with the
likely cause; others stay 500, their traceback in the log only (the batcher logs it).

GEN3D_STAGE_OFFLOAD keeps every stage on the CPU except the one running (offload.py).
Outputs are converted to Gen3D's frame in output.py / frames.py.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from gen3d.serve import request_options
from gen3d.serve.backends.base import Sample, synthetic_sample
from gen3d.serve.backends.device import resolve_device
from gen3d.serve.backends.sam3d.input_failures import as_input_error
from gen3d.serve.backends.sam3d.loading import (
    Attention,
    apply_precision,
    check_offline_caches,
    choose_attention,
    choose_precision,
    configured_dtype,
    dtype_name,
    find_pipeline_config,
    force_offline_hubs,
    import_upstream,
    installed_kernels,
    prepare_import_environment,
    require_cuda,
)
from gen3d.serve.backends.sam3d.offload import STAGES, StageOffload, lookup
from gen3d.serve.backends.sam3d.output import output_to_asset
from gen3d.serve.errors import ArtifactError, Unprocessable, is_out_of_memory
from gen3d.serve.outputs.assets import Asset

if TYPE_CHECKING:
    from gen3d.serve.settings import Settings

log = logging.getLogger("gen3d.backend")

DECODE_FORMATS = ("mesh", "gaussian")
MAX_STEPS = 200
# Upstream bakes textures (pipeline.run(with_texture_baking=True)) with nvdiffrast, which
# needs a CUDA build at image-build time and is not in container/requirements-sam3d.txt.
TEXTURE_REFUSAL = (
    "option texture=image is not available on backend 'sam3d': upstream's texture baking "
    "needs nvdiffrast, which this image does not have; use texture=vertex"
)

# The arguments notebook/inference.py's Inference.__call__ passes to pipeline.run
# (notebook/inference.py:109-120; the contract test compares them).
NOTEBOOK_RUN_ARGS: dict[str, Any] = {
    "stage1_only": False,
    "with_mesh_postprocess": False,
    "with_texture_baking": False,
    "with_layout_postprocess": True,
    "use_vertex_color": True,
}
# pipeline.run's step argument -> (the pipeline's default attribute, generator key)
STEP_DEFAULTS = {
    "stage1_inference_steps": ("ss_inference_steps", "ss_generator"),
    "stage2_inference_steps": ("slat_inference_steps", "slat_generator"),
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
        self.attention: Attention | None = None
        self.dtype: str | None = None
        self.default_steps: dict[str, int] = {}

    def load(self, model_dir: Path, settings: Settings) -> None:
        from gen3d.serve.artifact.manifest import verify

        # The artifact (gen3d package) is checked file by file before upstream reads any
        # of it; a directory without a manifest only with GEN3D_ALLOW_UNVERIFIED_MODEL=1.
        verify(model_dir, self.name, strict=not settings.allow_unverified_model)
        self.config_path = find_pipeline_config(model_dir)
        gpu = require_cuda()
        device = resolve_device(settings.device)
        self.device = device  # an accelerator: answers are encoded beside the model
        check_offline_caches(model_dir, self.config_path)
        force_offline_hubs(model_dir)
        prepare_import_environment()
        self.attention = choose_attention(gpu, installed_kernels())
        # chosen (or refused) before the slow load; applied to the pipeline after it
        dtype, why = choose_precision(gpu, configured_dtype(self.config_path), settings.precision)
        self.dtype = dtype_name(dtype)
        inference_cls = import_upstream(model_dir).Inference
        start = time.perf_counter()
        self._inference = inference_cls(str(self.config_path), compile=False)
        log.info("sam3d loaded %s in %.1f s", self.config_path, time.perf_counter() - start)
        pipeline = self._pipeline()
        apply_precision(pipeline, dtype, settings.precision)
        log.info(
            "sam3d on %s (compute capability %s): attention %s/%s (%s: %s), dtype %s (%s)",
            gpu.name,
            gpu.capability_text,
            self.attention.dense,
            self.attention.sparse,
            self.attention.chosen_by,
            self.attention.reason,
            self.dtype,
            why,
        )
        self.default_steps = {
            arg: int(getattr(pipeline, attr)) for arg, (attr, _) in STEP_DEFAULTS.items()
        }
        if settings.stage_offload:
            self.offload = StageOffload.attach(pipeline, device)
            if self.offload is None:
                log.warning("sam3d: upstream exposes no stages; GEN3D_STAGE_OFFLOAD ignored")

    def _pipeline(self) -> Any:
        pipeline = getattr(self._inference, "_pipeline", None)
        if pipeline is None or not callable(getattr(pipeline, "run", None)):
            raise ArtifactError("this SAM 3D Objects build has no Inference._pipeline.run")
        return pipeline

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
                module = lookup(pipeline, path)
                if isinstance(module, torch.nn.Module):
                    # "models.ss_generator" -> ss_generator, "depth_model.model" -> depth_model
                    found[path.removesuffix(".model").rsplit(".", 1)[-1]] = module
        return found

    def predict(self, batch: list[Sample]) -> list[Asset | Exception]:
        results: list[Asset | Exception] = []
        for sample in batch:
            try:
                results.append(self._one(sample))
            except Exception as exc:
                # spconv / cumm report CUDA OOM as a plain RuntimeError: both are
                # capacity, for the batcher to split or answer 503
                if is_out_of_memory(exc):
                    raise
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
        pipeline = self._pipeline()
        layout = runs_layout_postprocess(pipeline)
        run_kwargs = {
            **self.default_steps,
            **upstream_run_options(sample.options, sample.format, layout),
        }
        rgba = np.concatenate(
            [sample.image[..., :3], sample.mask.astype(np.uint8)[..., None] * 255], axis=-1
        )
        start = time.perf_counter()
        try:
            out = pipeline.run(rgba, None, sample.seed, **NOTEBOOK_RUN_ARGS, **run_kwargs)
        except Exception as exc:
            input_error = as_input_error(exc, sample.mask)
            if input_error is None:
                raise
            log.info("sam3d: upstream failed on the mask (%r): %s", exc, input_error)
            raise input_error from exc
        finally:
            self._restore_steps(pipeline)
        elapsed = time.perf_counter() - start
        asset = output_to_asset(out)
        asset.metadata.update(
            backend=self.name,
            seed=sample.seed,
            stage1_inference_steps=run_kwargs["stage1_inference_steps"],
            stage2_inference_steps=run_kwargs["stage2_inference_steps"],
            decode_formats=run_kwargs.get("decode_formats", list(DECODE_FORMATS)),
            layout_postprocess=layout,
            stage_offload=self.offload is not None,
            attention=self.attention.as_metadata() if self.attention else None,
            dtype=self.dtype,
            model_seconds=round(elapsed, 3),
        )
        if sample.format in ("glb", "obj") and asset.mesh is None:
            raise Unprocessable(f"format {sample.format!r} needs a mesh; SAM 3D returned none")
        if sample.format == "ply" and asset.splat is None:
            raise Unprocessable("format 'ply' needs a Gaussian splat; SAM 3D returned none")
        return asset

    def _restore_steps(self, pipeline: Any) -> None:
        """Put the generators' steps back (upstream restores them only on success)."""
        for arg, (_, key) in STEP_DEFAULTS.items():
            generator = lookup(pipeline, f"models.{key}")
            if generator is not None and arg in self.default_steps:
                generator.inference_steps = self.default_steps[arg]


# -- options -----------------------------------------------------------------------------


def runs_layout_postprocess(pipeline: Any) -> bool:
    """Whether pipeline.run refines the pose from the GLB (inference_pipeline_pointmap.py
    :397-401: with_layout_postprocess and a configured method)."""
    return bool(NOTEBOOK_RUN_ARGS["with_layout_postprocess"]) and (
        getattr(pipeline, "layout_post_optimization_method", None) is not None
    )


def upstream_run_options(options: Any, fmt: str, layout_postprocess: bool) -> dict[str, Any]:
    """Request options -> pipeline.run keyword arguments (steps only when given). While
    the pose is refined from the mesh, the mesh is always decoded."""
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
        if layout_postprocess and "mesh" not in formats:
            raise Unprocessable(
                "decode_formats must include 'mesh' on this model: its layout "
                "post-optimisation refines the pose from the mesh, and without it the "
                "pose would differ from the same request's GLB"
            )
        kwargs["decode_formats"] = list(dict.fromkeys(formats))
    elif fmt == "ply" and not layout_postprocess:
        kwargs["decode_formats"] = ["gaussian"]  # skip the mesh decoder: nobody reads it
    return kwargs
