"""`proxy`: a random-weight network with SAM 3D Objects' compute and memory shape.

For performance work only (batching, precision, compile, memory planning, cost): it
runs the same kind of work as SAM 3D (ViT-L/14 image encoder, two flow-matching
transformer stages with classifier-free guidance, a 3D decoder, marching cubes) but its
weights are random, so its meshes are an inflated silhouette perturbed by noise. Every
asset says so in its metadata.

A batch is one real batched forward: stacked inputs, one encoder pass, the step loops
on the whole batch, one decoder pass; then per-sample marching cubes. Each sample's
noise comes from its own generator seeded with the sample's seed, and no op mixes
samples, so a result depends on (input, seed, steps) and not on its batch-mates.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from gen3d.serve.backends.base import Sample, synthetic_sample
from gen3d.serve.backends.device import dtype_name, resolve_device, resolve_dtype
from gen3d.serve.backends.proxy import mesh as proxy_mesh
from gen3d.serve.backends.proxy.flow import run_pipeline
from gen3d.serve.backends.proxy.model import ProxyConfig, ProxyModel, build_model
from gen3d.serve.backends.proxy.weights import WEIGHTS_FILE, load_weights, read_config
from gen3d.serve.errors import Unprocessable
from gen3d.serve.outputs.assets import Asset

if TYPE_CHECKING:
    from gen3d.serve.settings import Settings

log = logging.getLogger("gen3d.backend")

NOTE = "random-weight performance stand-in with SAM 3D's compute shape; no quality claim"
MAX_STEPS = 200
SEED_MASK = 0xFFFF_FFFF_FFFF_FFFF  # torch generators take unsigned 64-bit seeds


class ProxyBackend:
    name = "proxy"
    needs_mask = True
    options = frozenset({"steps", "stage1_inference_steps", "stage2_inference_steps"})

    def __init__(self) -> None:
        self.max_batch_size = 8
        self.config: ProxyConfig | None = None
        self.model: ProxyModel | None = None
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.variant = "fp32"  # precision (+ INT8 + compile) as loaded, for metadata

    # -- loading ---------------------------------------------------------------------

    def load(self, model_dir: Path, settings: Settings) -> None:
        """A plain model dir (config.json + proxy.safetensors), or an optimised one: its
        gen3d-manifest.json is verified (sha256 of every file) before anything is read,
        and decides precision, INT8 and compile (gen3d.serve.backends.proxy.artifact)."""
        from gen3d.serve.artifact.manifest import verify

        self.max_batch_size = settings.max_batch_size
        self.device = resolve_device(settings.device)
        manifest = verify(model_dir, self.name, strict=not settings.allow_unverified_model)
        config, _ = read_config(model_dir)
        start = time.perf_counter()
        if manifest is not None and manifest["applied"].get("variant") is not None:
            from gen3d.serve.backends.proxy.artifact import load_proxy_artifact

            model, variant, self.dtype = load_proxy_artifact(
                model_dir, manifest, config, self.device, settings.precision
            )
            self.variant = variant.label
        else:
            self.dtype = resolve_dtype(settings.precision, self.device)
            model = build_model(config, "meta")
            load_weights(model, model_dir / WEIGHTS_FILE, self.device, self.dtype)
            for module in model.stages().values():
                self._place(module)
            self.variant = dtype_name(self.dtype)
        self.config, self.model = config, model
        log.info(
            "proxy %s loaded from %s on %s as %s (%.1f s)",
            config.size,
            model_dir,
            self.device,
            self.variant,
            time.perf_counter() - start,
        )

    def _place(self, module: torch.nn.Module) -> torch.nn.Module:
        """The one place that decides where a stage lives and in what precision."""
        return module.to(device=self.device, dtype=self.dtype).eval().requires_grad_(False)

    def modules(self) -> dict[str, torch.nn.Module]:
        return self._loaded().stages()

    def _loaded(self) -> ProxyModel:
        if self.model is None:
            raise RuntimeError("the proxy backend is not loaded")
        return self.model

    # -- warm-up ---------------------------------------------------------------------

    def warmup(self) -> None:
        """One synthetic batch per bucket 1, 2, 4, ... up to max_batch_size."""
        for size in batch_buckets(self.max_batch_size):
            batch = [synthetic_sample(128, seed=i) for i in range(size)]
            start = time.perf_counter()
            results = self.predict(batch)
            elapsed = time.perf_counter() - start
            failed = [r for r in results if isinstance(r, Exception)]
            if failed:
                raise RuntimeError(f"warm-up batch of {size} failed: {failed[0]}")
            log.info("warm-up proxy batch=%d took %.1f ms", size, 1000 * elapsed)

    # -- inference -------------------------------------------------------------------

    def predict(self, batch: list[Sample]) -> list[Asset | Exception]:
        model = self._loaded()
        config = model.config
        results: list[Asset | Exception | None] = [None] * len(batch)
        groups: dict[tuple[int, int], list[int]] = {}
        crops: dict[int, proxy_mesh.Crop] = {}
        inputs: dict[int, np.ndarray] = {}
        for i, sample in enumerate(batch):
            try:
                steps = parse_steps(sample.options, config)
                if sample.mask is None:
                    raise Unprocessable("the proxy backend needs a mask")
                crops[i] = proxy_mesh.square_crop(sample.mask)
                inputs[i] = proxy_mesh.encoder_input(
                    sample.image, sample.mask, crops[i], config.image_size
                )
            except Unprocessable as exc:
                results[i] = exc
                continue
            groups.setdefault(steps, []).append(i)
        # Samples asking for different step counts cannot share a step loop.
        for steps, indices in groups.items():
            logits = self._forward(
                [inputs[i] for i in indices], [batch[i].seed for i in indices], steps
            )
            for row, i in enumerate(indices):
                try:
                    results[i] = self._asset(batch[i], crops[i], logits[row], steps)
                except Exception as exc:  # one sample's post-processing fails alone
                    log.warning("proxy post-processing failed for sample %d: %s", i, exc)
                    results[i] = exc
        return [r if r is not None else RuntimeError("sample not processed") for r in results]

    def _forward(
        self, images: list[np.ndarray], seeds: list[int], steps: tuple[int, int]
    ) -> np.ndarray:
        """One batched pass; returns occupancy logits (B, R, R, R) as float32 numpy."""
        model = self._loaded()
        c = model.config
        noise1, noise2 = [], []
        for seed in seeds:
            gen = torch.Generator().manual_seed(seed & SEED_MASK)
            noise1.append(torch.randn(c.tokens, c.latent_channels, generator=gen))
            noise2.append(torch.randn(c.tokens, c.latent_channels, generator=gen))
        with torch.inference_mode():
            x = torch.from_numpy(np.stack(images)).to(self.device, self.dtype)
            logits = run_pipeline(
                model,
                x,
                torch.stack(noise1).to(self.device),
                torch.stack(noise2).to(self.device),
                stage1_steps=steps[0],
                stage2_steps=steps[1],
            )
        return logits.cpu().numpy()

    def _asset(
        self, sample: Sample, crop: proxy_mesh.Crop, logits: np.ndarray, steps: tuple[int, int]
    ) -> Asset:
        config = self._loaded().config
        resolution = config.occupancy_resolution
        assert sample.mask is not None
        prior = proxy_mesh.silhouette_prior(sample.mask, crop, resolution)
        field = proxy_mesh.occupancy_field(prior, logits)
        mesh = proxy_mesh.extract_mesh(field, sample.image, crop)
        splat = proxy_mesh.splat_from_mesh(mesh, resolution)
        metadata: dict[str, Any] = {
            "backend": self.name,
            "note": NOTE,
            "seed": sample.seed,
            "steps": {"stage1": steps[0], "stage2": steps[1]},
            "proxy_size": config.size,
            "device": self.device.type,
            "precision": dtype_name(self.dtype),
            "variant": self.variant,
            "vertices": len(mesh.vertices),
            "faces": len(mesh.faces),
        }
        return Asset(mesh=mesh, splat=splat, metadata=metadata)


def parse_steps(options: Any, config: ProxyConfig) -> tuple[int, int]:
    """(stage 1, stage 2) step counts: `steps` sets both, the stage keys override."""
    both = _steps_option(options, "steps", None)
    stage1 = _steps_option(options, "stage1_inference_steps", both or config.stage1_steps)
    stage2 = _steps_option(options, "stage2_inference_steps", both or config.stage2_steps)
    return stage1, stage2


def _steps_option(options: Any, key: str, default: int | None) -> Any:
    value = options.get(key, default) if options else default
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_STEPS:
        raise Unprocessable(f"option {key!r} must be an integer in [1, {MAX_STEPS}]")
    return value


def batch_buckets(max_batch_size: int) -> list[int]:
    """1, 2, 4, ... below max_batch_size, then max_batch_size itself."""
    sizes, size = [], 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    sizes.append(max(1, max_batch_size))
    return sizes
