"""The sam3d adapter against a stand-in of SAM 3D Objects' interface.

tests/fixtures/sam3d_standin mimics upstream's notebook/inference.py (`Inference`,
`_pipeline.run`, the output dict, stage methods). The real model is never run here.
"""

from __future__ import annotations

import io
import logging
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from gen3d.serve.assets import Asset, encode_asset
from gen3d.serve.backends import create_backend
from gen3d.serve.backends.base import Backend, Sample, synthetic_sample
from gen3d.serve.backends.sam3d.adapter import (
    NOTEBOOK_RUN_ARGS,
    UPSTREAM_MODULE_NAME,
    Sam3DBackend,
    upstream_run_options,
)
from gen3d.serve.backends.sam3d.output import read_binary_ply
from gen3d.serve.errors import ArtifactError, Unprocessable
from gen3d.serve.settings import Settings

STANDIN = Path(__file__).resolve().parents[1] / "fixtures" / "sam3d_standin"
HUB_VARS = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "TORCH_HOME",
    "HF_HOME",
)
OOM_SEED = 0xDEAD


def _forget_upstream() -> None:
    for name in list(sys.modules):
        if name == UPSTREAM_MODULE_NAME or name.split(".")[0] == "sam3d_objects":
            del sys.modules[name]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fresh upstream import per test; hub variables restored afterwards."""
    for var in HUB_VARS:
        monkeypatch.delenv(var, raising=False)
    _forget_upstream()
    yield
    _forget_upstream()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    hf = tmp_path / "model" / "checkpoints" / "hf"
    hf.mkdir(parents=True)
    (hf / "pipeline.yaml").write_text("ss_inference_steps: 25\nslat_inference_steps: 25\n")
    for cache in ("caches/torch", "caches/huggingface"):
        (tmp_path / "model" / cache).mkdir(parents=True)
    return tmp_path / "model"


@pytest.fixture
def standin_on_path(monkeypatch: pytest.MonkeyPatch, clean_env: None) -> None:
    monkeypatch.syspath_prepend(str(STANDIN))


def _loaded(model_dir: Path, **settings: object) -> Sam3DBackend:
    backend = Sam3DBackend()
    backend.load(
        model_dir, Settings(backend="sam3d", model_dir=model_dir, device="cpu", **settings)
    )
    return backend


def _sample(seed: int = 7, fmt: str = "glb", **options: object) -> Sample:
    base = synthetic_sample(64, seed=seed, fmt=fmt)
    return Sample(image=base.image, mask=base.mask, seed=seed, format=fmt, options=options)


def _pipeline(backend: Sam3DBackend):
    return backend._inference._pipeline


def test_load_forces_offline_hubs_before_importing_upstream(
    model_dir: Path, standin_on_path: None
) -> None:
    backend = _loaded(model_dir)
    assert isinstance(backend, Backend) and isinstance(create_backend("sam3d"), Sam3DBackend)
    assert backend.max_batch_size == 1 and backend.needs_mask
    import sam3d_objects

    seen = sam3d_objects.ENV_AT_IMPORT
    assert seen["HF_HUB_OFFLINE"] == "1" and seen["TRANSFORMERS_OFFLINE"] == "1"
    assert seen["TORCH_HOME"] == str(model_dir / "caches" / "torch")
    assert seen["HF_HOME"] == str(model_dir / "caches" / "huggingface")
    assert backend._inference.config_file == str(model_dir / "checkpoints/hf/pipeline.yaml")
    assert set(backend.modules()) >= {"ss_generator", "slat_generator", "depth_model"}


def test_default_request_uses_the_notebook_call_and_maps_outputs(
    model_dir: Path, standin_on_path: None
) -> None:
    import trimesh
    from plyfile import PlyData

    backend = _loaded(model_dir)
    sample = _sample(seed=7)
    (asset,) = backend.predict([sample])
    assert isinstance(asset, Asset)
    (call,) = _pipeline(backend).calls
    # Inference.__call__ was used: upstream defaults for steps and decoders.
    assert call["seed"] == 7 and call["stage1_inference_steps"] is None
    assert call["decode_formats"] is None and call["use_vertex_color"] is True
    meta = asset.metadata
    assert meta["backend"] == "sam3d" and meta["seed"] == 7
    assert meta["pose"] == {
        "rotation": [1.0, 0.0, 0.0, 0.0],
        "translation": pytest.approx([0.1, -0.2, 2.5]),
        "scale": [0.75, 0.75, 0.75],
    }
    assert meta["decode_formats"] == ["mesh", "gaussian"]
    # Mesh: centred, unit extent, the stand-in's colour (mean of the masked pixels).
    verts = asset.mesh.vertices
    assert np.isclose(np.ptp(verts, axis=0).max(), 1.0, atol=1e-6)
    np.testing.assert_allclose((verts.min(0) + verts.max(0)) / 2, 0, atol=1e-6)
    colour = sample.image[sample.mask].mean(0).astype(np.uint8)
    np.testing.assert_array_equal(asset.mesh.vertex_colors[:, :3], np.tile(colour, (len(verts), 1)))
    assert meta["normalization"]["mesh"]["center"] == pytest.approx([0.3, 0.0, 0.0], abs=1e-6)
    glb = trimesh.load(io.BytesIO(encode_asset(asset, "glb")), file_type="glb", force="mesh")
    assert len(glb.faces) == 320 and glb.is_watertight
    # Splat: read back through upstream-style save_ply, normalised the same way.
    ply = PlyData.read(io.BytesIO(encode_asset(asset, "ply")))["vertex"]
    assert ply.count == 162
    xyz = np.stack([ply["x"], ply["y"], ply["z"]], 1)
    assert np.isclose(np.ptp(xyz, axis=0).max(), 1.0, atol=1e-5)
    factor = meta["normalization"]["splat"]["factor"]
    np.testing.assert_allclose(ply["scale_0"], np.log(0.01) + np.log(factor), rtol=1e-5)
    rgb = 0.5 + 0.28209479177387814 * np.stack([ply[f"f_dc_{i}"] for i in range(3)], 1)
    np.testing.assert_allclose(rgb[0] * 255, sample.image[sample.mask].mean(0), atol=0.01)


def test_options_go_to_pipeline_run(model_dir: Path, standin_on_path: None) -> None:
    backend = _loaded(model_dir)
    options = {
        "stage1_inference_steps": 12,
        "stage2_inference_steps": 7,
        "decode_formats": ["gaussian", "mesh"],
    }
    (asset,) = backend.predict([_sample(seed=3, **options)])
    assert isinstance(asset, Asset)
    (call,) = _pipeline(backend).calls
    for key, value in {**options, **NOTEBOOK_RUN_ARGS}.items():
        assert call[key] == value, key
    assert asset.metadata["stage1_inference_steps"] == 12
    assert asset.metadata["stage2_inference_steps"] == 7


def test_ply_request_skips_the_mesh_decoder(model_dir: Path, standin_on_path: None) -> None:
    backend = _loaded(model_dir)
    (asset,) = backend.predict([_sample(fmt="ply")])
    assert _pipeline(backend).calls[0]["decode_formats"] == ["gaussian"]
    assert asset.mesh is None and asset.splat is not None
    assert encode_asset(asset, "ply").startswith(b"ply\n")
    with pytest.raises(ValueError, match="no mesh"):
        encode_asset(asset, "glb")


def test_bad_options_fail_only_their_sample(model_dir: Path, standin_on_path: None) -> None:
    backend = _loaded(model_dir)
    empty = Sample(image=_sample().image, mask=np.zeros((64, 64), bool), seed=1)
    batch = [
        _sample(stage1_inference_steps=0),
        _sample(decode_formats=["voxels"]),
        _sample(decode_formats=["mesh"]),
        _sample(fmt="glb", decode_formats=["gaussian"]),
        _sample(fmt="ply", decode_formats=["mesh", "gaussian"]),
        empty,
    ]
    results = backend.predict(batch)
    assert [type(r).__name__ for r in results[:4]] == ["Unprocessable"] * 4
    assert "stage1_inference_steps" in str(results[0])
    assert "needs 'gaussian'" in str(results[2])
    assert isinstance(results[4], Asset) and "empty" in str(results[5])
    assert len(_pipeline(backend).calls) == 1  # only the valid sample reached upstream


def test_texture_image_is_refused_with_the_reason_before_upstream_runs(
    model_dir: Path, standin_on_path: None
) -> None:
    backend = _loaded(model_dir)
    (result,) = backend.predict([_sample(texture="image")])
    assert isinstance(result, Unprocessable) and "nvdiffrast" in str(result)
    assert _pipeline(backend).calls == []


def test_upstream_out_of_memory_reaches_the_batcher(model_dir: Path, standin_on_path: None) -> None:
    backend = _loaded(model_dir)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        backend.predict([_sample(seed=OOM_SEED)])


def test_upstream_run_options_table() -> None:
    assert upstream_run_options({}, "glb") == {}
    assert upstream_run_options({}, "ply") == {"decode_formats": ["gaussian"]}
    assert upstream_run_options({"decode_formats": "gaussian"}, "ply") == {
        "decode_formats": ["gaussian"]
    }
    assert upstream_run_options({"stage2_inference_steps": 5}, "obj") == {
        "stage2_inference_steps": 5
    }
    with pytest.raises(Unprocessable):
        upstream_run_options({"stage2_inference_steps": True}, "glb")


def test_missing_config_or_upstream_is_an_artifact_error(
    tmp_path: Path, model_dir: Path, clean_env: None
) -> None:
    with pytest.raises(ArtifactError, match=r"pipeline\.yaml"):
        _loaded(tmp_path)
    with pytest.raises(ArtifactError, match="not installed"):
        _loaded(model_dir)  # stand-in not on sys.path, no checkout in the model dir


def test_checkout_inside_the_model_dir_is_found(model_dir: Path, clean_env: None) -> None:
    shutil.copytree(STANDIN, model_dir / "sam-3d-objects")
    (model_dir / "pipeline.yaml").write_text(
        (model_dir / "checkpoints/hf/pipeline.yaml").read_text()
    )
    shutil.rmtree(model_dir / "checkpoints")
    try:
        backend = _loaded(model_dir)
        assert backend._inference.config_file == str(model_dir / "pipeline.yaml")
        assert isinstance(backend.predict([_sample()])[0], Asset)
    finally:
        sys.path[:] = [p for p in sys.path if p != str(model_dir / "sam-3d-objects")]


def test_stage_offload_wraps_each_stage(
    model_dir: Path, standin_on_path: None, caplog: pytest.LogCaptureFixture
) -> None:
    plain = _loaded(model_dir)
    (expected,) = plain.predict([_sample(seed=5)])
    _forget_upstream()
    backend = _loaded(model_dir, stage_offload=True)
    assert backend.offload is not None
    assert set(backend.offload.stages) == {
        "compute_pointmap",
        "sample_sparse_structure",
        "sample_slat",
        "decode_slat",
    }
    pipeline = _pipeline(backend)
    for method in backend.offload.stages:
        assert hasattr(getattr(pipeline, method), "__wrapped__")
    (asset,) = backend.predict([_sample(seed=5)])
    np.testing.assert_array_equal(asset.mesh.vertices, expected.mesh.vertices)
    assert asset.metadata["stage_offload"] is True
    assert [stage for stage, _ in pipeline.device_log] == [
        "compute_pointmap",
        "sample_sparse_structure",
        "sample_slat",
        "decode_slat",
    ]
    with caplog.at_level(logging.INFO, logger="gen3d.backend"):
        backend.warmup()
    assert any("warm-up sam3d batch=1 took" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_stage_offload_keeps_only_the_running_stage_on_the_gpu(
    model_dir: Path, standin_on_path: None
) -> None:
    backend = Sam3DBackend()
    backend.load(model_dir, Settings(backend="sam3d", model_dir=model_dir, stage_offload=True))
    backend.predict([_sample()])
    log = dict(_pipeline(backend).device_log)
    assert log["sample_sparse_structure"]["ss_generator"] == "cuda"
    assert log["sample_sparse_structure"]["slat_generator"] == "cpu"
    assert log["sample_slat"]["slat_generator"] == "cuda"
    assert log["sample_slat"]["ss_generator"] == "cpu"
    assert log["decode_slat"]["slat_decoder_mesh"] == "cuda"


def test_ply_reader_rejects_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="not a PLY"):
        read_binary_ply(b"hello")
    with pytest.raises(ValueError, match="little-endian"):
        read_binary_ply(b"ply\nformat ascii 1.0\nelement vertex 0\nend_header\n")
