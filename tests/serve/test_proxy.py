"""The proxy backend (tiny, CPU): real weights on disk, real batched forwards, real meshes."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from gen3d.model_opt.proxy_model import init_proxy_model
from gen3d.serve.backends import create_backend
from gen3d.serve.backends.base import Backend, Sample, synthetic_sample
from gen3d.serve.backends.device import resolve_dtype
from gen3d.serve.backends.proxy.backend import ProxyBackend, batch_buckets, parse_steps
from gen3d.serve.backends.proxy.model import config_for
from gen3d.serve.backends.synthetic import photo_and_mask
from gen3d.serve.errors import ArtifactError, Unprocessable
from gen3d.serve.outputs.assets import Asset
from gen3d.serve.outputs.encoding import encode_asset
from gen3d.serve.settings import Settings, SettingsError

# Same sample alone vs. inside a batch of 8 (CPU fp32): matmul blocking may differ with
# the batch size, which moves logits by ~1e-6 relative; after marching cubes that is
# ~1e-6 of the unit extent. 1e-4 is far below a grid cell (1/24) yet catches any mixing
# of samples, which moves vertices by whole cells.
VERTEX_ATOL = 1e-4


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("proxy-tiny")
    init_proxy_model(config_for("tiny"), 0, out)
    return out


@pytest.fixture(scope="module")
def backend(model_dir: Path) -> ProxyBackend:
    b = ProxyBackend()
    b.load(model_dir, Settings(backend="proxy", model_dir=model_dir, max_batch_size=8))
    return b


def _photo(seed: int, size: int = 96) -> Sample:
    """A random photo with an ellipse mask: varied inputs, not just the warm-up disc."""
    rx, ry = np.random.default_rng(seed).uniform(0.2, 0.4, 2)
    image, mask = photo_and_mask(size, seed, width=size + 16, ellipse=(0.5, 0.5, rx, ry))
    return Sample(image=image, mask=mask, seed=seed)


def test_backend_satisfies_protocol_and_registry(backend: ProxyBackend) -> None:
    assert isinstance(backend, Backend)
    assert isinstance(create_backend("proxy"), ProxyBackend)
    assert backend.name == "proxy" and backend.needs_mask
    assert backend.max_batch_size == 8
    assert {"steps", "stage1_inference_steps", "stage2_inference_steps"} <= backend.options
    mods = backend.modules()
    assert set(mods) == {"encoder", "generator_stage1", "generator_stage2", "decoder"}
    for module in mods.values():
        p = next(module.parameters())
        assert p.device.type == "cpu" and p.dtype == torch.float32 and not p.requires_grad


@pytest.mark.slow  # runs the tiny proxy model on CPU
def test_asset_is_a_closed_mesh_with_splat_and_honest_metadata(backend: ProxyBackend) -> None:
    import trimesh
    from plyfile import PlyData

    (asset,) = backend.predict([_photo(1)])
    assert isinstance(asset, Asset)
    meta = asset.metadata
    assert meta["backend"] == "proxy" and meta["seed"] == 1
    assert meta["steps"] == {"stage1": 4, "stage2": 4}
    assert "random-weight" in meta["note"] and "no quality claim" in meta["note"]
    mesh = trimesh.load(io.BytesIO(encode_asset(asset, "glb")), file_type="glb", force="mesh")
    assert len(mesh.faces) > 100 and mesh.is_watertight and mesh.volume > 0
    assert np.isclose(np.ptp(mesh.vertices, axis=0).max(), 1.0, atol=1e-5)
    ply = PlyData.read(io.BytesIO(encode_asset(asset, "ply")))
    assert ply["vertex"].count == len(asset.mesh.vertices)


@pytest.mark.slow
def test_same_input_and_seed_is_deterministic_and_seed_matters(backend: ProxyBackend) -> None:
    first = backend.predict([_photo(2)])[0]
    again = backend.predict([_photo(2)])[0]
    np.testing.assert_array_equal(first.mesh.vertices, again.mesh.vertices)
    np.testing.assert_array_equal(first.mesh.faces, again.mesh.faces)
    reseeded = backend.predict([Sample(_photo(2).image, _photo(2).mask, seed=99)])[0]
    same_shape = reseeded.mesh.vertices.shape == first.mesh.vertices.shape
    assert not same_shape or not np.allclose(reseeded.mesh.vertices, first.mesh.vertices)


@pytest.mark.slow
def test_result_does_not_depend_on_batch_mates(backend: ProxyBackend) -> None:
    batch = [_photo(10 + i) for i in range(8)]
    together = backend.predict(batch)
    for i in (0, 3, 7):
        alone = backend.predict([batch[i]])[0]
        assert alone.mesh.vertices.shape == together[i].mesh.vertices.shape
        np.testing.assert_array_equal(alone.mesh.faces, together[i].mesh.faces)
        np.testing.assert_allclose(
            alone.mesh.vertices, together[i].mesh.vertices, rtol=0, atol=VERTEX_ATOL
        )
        np.testing.assert_array_equal(alone.mesh.vertex_colors, together[i].mesh.vertex_colors)


@pytest.mark.slow  # runs the tiny proxy model on CPU
def test_bad_sample_fails_alone(backend: ProxyBackend) -> None:
    good = _photo(4)
    empty = Sample(image=good.image, mask=np.zeros_like(good.mask), seed=4)
    bad_steps = Sample(image=good.image, mask=good.mask, seed=4, options={"steps": 0})
    results = backend.predict([good, empty, bad_steps, good])
    assert isinstance(results[0], Asset) and isinstance(results[3], Asset)
    assert isinstance(results[1], Unprocessable) and "empty" in str(results[1])
    assert isinstance(results[2], Unprocessable) and "steps" in str(results[2])
    np.testing.assert_allclose(results[0].mesh.vertices, results[3].mesh.vertices, atol=VERTEX_ATOL)


@pytest.mark.slow  # runs the tiny proxy model on CPU, several step counts
def test_step_options_group_the_batch(backend: ProxyBackend) -> None:
    base = _photo(5)
    fast = Sample(base.image, base.mask, seed=5, options={"steps": 2})
    split = Sample(base.image, base.mask, seed=5, options={"stage1_inference_steps": 3})
    results = backend.predict([base, fast, split])
    assert [r.metadata["steps"] for r in results] == [
        {"stage1": 4, "stage2": 4},
        {"stage1": 2, "stage2": 2},
        {"stage1": 3, "stage2": 4},
    ]
    # Fewer steps integrate the flow differently: the mesh must change.
    a, b = results[0].mesh.vertices, results[1].mesh.vertices
    assert a.shape != b.shape or not np.allclose(a, b)
    # Grouped runs give what a lone run with the same options gives.
    (lone_fast,) = backend.predict([fast])
    np.testing.assert_allclose(lone_fast.mesh.vertices, b, atol=VERTEX_ATOL)


def test_parse_steps_rules() -> None:
    config = config_for("tiny")
    assert parse_steps({}, config) == (4, 4)
    assert parse_steps({"steps": 9, "stage2_inference_steps": 3}, config) == (9, 3)
    for bad in ({"steps": True}, {"steps": 1.5}, {"stage1_inference_steps": 201}):
        with pytest.raises(Unprocessable):
            parse_steps(bad, config)


@pytest.mark.slow  # warms up every batch bucket of the proxy model
def test_warmup_runs_every_bucket_and_logs_times(
    backend: ProxyBackend, caplog: pytest.LogCaptureFixture
) -> None:
    assert batch_buckets(8) == [1, 2, 4, 8]
    assert batch_buckets(6) == [1, 2, 4, 6]
    assert batch_buckets(1) == [1]
    with caplog.at_level(logging.INFO, logger="gen3d.backend"):
        backend.warmup()
    lines = [r.getMessage() for r in caplog.records if r.name == "gen3d.backend"]
    for size in (1, 2, 4, 8):
        assert any(f"batch={size} took" in line and "ms" in line for line in lines), lines


def test_load_refuses_missing_or_mismatched_artifacts(tmp_path: Path, model_dir: Path) -> None:
    settings = Settings(backend="proxy", model_dir=tmp_path)
    with pytest.raises(ArtifactError, match="gen3d proxy init"):
        ProxyBackend().load(tmp_path, settings)
    # past the manifest check (GEN3D_ALLOW_UNVERIFIED_MODEL=1), the loader's own checks
    settings = Settings(backend="proxy", model_dir=tmp_path, allow_unverified_model=True)
    with pytest.raises(ArtifactError, match="gen3d proxy init"):
        ProxyBackend().load(tmp_path, settings)
    # config says one shape, weights another
    (tmp_path / "config.json").write_text((model_dir / "config.json").read_text())
    other = tmp_path / "other"
    init_proxy_model(config_for("tiny", stage1_depth=3), 0, other)
    (tmp_path / "proxy.safetensors").write_bytes((other / "proxy.safetensors").read_bytes())
    with pytest.raises(ArtifactError, match="does not match"):
        ProxyBackend().load(tmp_path, settings)
    (tmp_path / "proxy.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    with pytest.raises(ArtifactError, match="unreadable"):
        ProxyBackend().load(tmp_path, settings)
    payload = json.loads((model_dir / "config.json").read_text())
    payload["config"]["bogus"] = 1
    (tmp_path / "config.json").write_text(json.dumps(payload))
    with pytest.raises(ArtifactError, match="bogus"):
        ProxyBackend().load(tmp_path, settings)


def test_precision_and_device_policy(model_dir: Path) -> None:
    cpu = torch.device("cpu")
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("bf16", cpu) == torch.bfloat16
    b = ProxyBackend()
    b.load(model_dir, Settings(backend="proxy", model_dir=model_dir, precision="bf16"))
    assert all(next(m.parameters()).dtype == torch.bfloat16 for m in b.modules().values())
    (asset,) = b.predict([synthetic_sample(96, seed=3)])
    assert isinstance(asset, Asset) and asset.metadata["precision"] == "bf16"
    if not torch.cuda.is_available():
        with pytest.raises(SettingsError, match="GEN3D_DEVICE"):
            ProxyBackend().load(model_dir, Settings(model_dir=model_dir, device="cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_auto_precision(model_dir: Path) -> None:
    b = ProxyBackend()
    b.load(model_dir, Settings(backend="proxy", model_dir=model_dir))
    capability = torch.cuda.get_device_capability()
    want = torch.float16 if capability >= (7, 0) else torch.float32
    assert next(b.modules()["encoder"].parameters()).dtype == want
    (asset,) = b.predict([synthetic_sample(96, seed=3)])
    assert isinstance(asset, Asset) and asset.metadata["device"] == "cuda"
    if capability < (8, 0):
        with pytest.raises(SettingsError, match="fp16"):
            resolve_dtype("bf16", torch.device("cuda"))
