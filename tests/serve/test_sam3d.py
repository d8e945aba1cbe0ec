"""The sam3d adapter against a stand-in of SAM 3D Objects.

tests/fixtures/sam3d_standin mimics upstream's interface *and its quirks* at the pinned
commit (see its README): the import-time GPU probe that fails without CUDA, the
CONDA_PREFIX / LIDRA_SKIP_INIT environment, a plain-class depth model, plain-attribute
tensors in the mesh decoder, step counts restored only on success, a y-up GLB next to
z-up Gaussians. The real model is never run here. Without a GPU, tests that load it
pretend one through torch.cuda (`fake_gpu`); the stand-in keeps its tensors on the CPU.
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import torch
import trimesh
from plyfile import PlyData
from scipy.spatial.transform import Rotation

from gen3d.model_opt.manifest import write_manifest
from gen3d.serve.backends import create_backend
from gen3d.serve.backends.base import Backend, Sample, synthetic_sample
from gen3d.serve.backends.sam3d.adapter import (
    NOTEBOOK_RUN_ARGS,
    Sam3DBackend,
    upstream_run_options,
)
from gen3d.serve.backends.sam3d.output import read_binary_ply
from gen3d.serve.errors import ArtifactError, Unprocessable, is_out_of_memory
from gen3d.serve.model.batching import as_client_error
from gen3d.serve.outputs.assets import Asset
from gen3d.serve.outputs.encoding import encode_asset
from gen3d.serve.settings import Settings

STANDIN = Path(__file__).resolve().parents[1] / "fixtures" / "sam3d_standin"
OOM_SEED = 0xDEAD  # the stand-in's torch.cuda.OutOfMemoryError in stage 2
RUNTIME_OOM_SEED = 0xBEEF  # the stand-in's RuntimeError("... out of memory") in decoding
INTERNAL_ERROR_SEED = 0xBAD  # the stand-in's plain ValueError in decoding
P3D_TO_GL = np.diag([-1.0, 1.0, -1.0])
# torch.hub's offline layout for dinov2_vitl14_reg (what upstream's Dino embedder loads)
DINOV2_FILES = (
    "caches/torch/hub/facebookresearch_dinov2_main/hubconf.py",
    "caches/torch/hub/checkpoints/dinov2_vitl14_reg4_pretrain.pth",
)

# the released pipeline.yaml's depth model, and where huggingface_hub keeps it offline
MOGE_CONFIG = """depth_model:
  _target_: sam3d_objects.pipeline.depth_models.moge.MoGe
  model:
    _target_: moge.model.v1.MoGeModel.from_pretrained
    pretrained_model_name_or_path: Ruicheng/moge-vitl
"""
MOGE_SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"
MOGE_REF = "caches/huggingface/hub/models--Ruicheng--moge-vitl/refs/main"
MOGE_WEIGHTS = (
    f"caches/huggingface/hub/models--Ruicheng--moge-vitl/snapshots/{MOGE_SNAPSHOT}/model.pt"
)


def _forget_upstream() -> None:
    for name in list(sys.modules):
        if name.startswith("gen3d_sam3d") or name.split(".")[0] == "sam3d_objects":
            del sys.modules[name]


@pytest.fixture
def clean_env() -> Iterator[None]:
    """Fresh upstream import per test; the process environment restored afterwards
    (the adapter sets hub, CUDA and attention variables for the process)."""
    saved = dict(os.environ)
    for var in (
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HF_DATASETS_OFFLINE",
        "TORCH_HOME",
        "HF_HOME",
        "CONDA_PREFIX",
        "CUDA_HOME",
        "LIDRA_SKIP_INIT",
        "ATTN_BACKEND",
        "SPARSE_ATTN_BACKEND",
    ):
        os.environ.pop(var, None)
    _forget_upstream()
    yield
    _forget_upstream()
    os.environ.clear()
    os.environ.update(saved)


# compute capabilities (NVIDIA's CUDA GPUs table) of the GPUs the tests name
CAPABILITY = {
    "NVIDIA A10G": (8, 6),
    "Tesla T4": (7, 5),
    "NVIDIA L40S": (8, 9),
    "NVIDIA H100 80GB HBM3": (9, 0),
}


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Make torch report one CUDA device of the given name and compute capability (the
    hardware is not there: the stand-in keeps its tensors on the CPU, as its config says)."""

    def pretend(name: str = "NVIDIA A10G", capability: tuple[int, int] | None = None) -> None:
        cap = capability or CAPABILITY[name]
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: cap)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)

    return pretend


def write_model_dir(root: Path) -> Path:
    hf = root / "checkpoints" / "hf"
    hf.mkdir(parents=True)
    # upstream's released pipeline.yaml runs layout post-optimisation (a hydra partial)
    (hf / "pipeline.yaml").write_text(
        "device: cpu\nss_inference_steps: 25\nslat_inference_steps: 25\n"
        "layout_post_optimization_method: run_post_optimization\n" + MOGE_CONFIG
    )
    for cache in ("caches/torch", "caches/huggingface"):
        (root / cache).mkdir(parents=True)
    for rel in (*DINOV2_FILES, MOGE_WEIGHTS):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"stand-in")
    (root / MOGE_REF).parent.mkdir(parents=True)
    (root / MOGE_REF).write_text(MOGE_SNAPSHOT)
    return seal(root)


def seal(root: Path) -> Path:
    """(Re)write the manifest the server requires, after a test changed the directory."""
    root.mkdir(parents=True, exist_ok=True)
    write_manifest(root, "sam3d", {"test": "stand-in model directory"})
    return root


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return write_model_dir(tmp_path / "model")


@pytest.fixture
def standin(
    monkeypatch: pytest.MonkeyPatch, clean_env: None, fake_gpu: Callable[[str], None]
) -> None:
    monkeypatch.syspath_prepend(str(STANDIN))
    fake_gpu("NVIDIA A10G")


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


# -- loading --------------------------------------------------------------------------


def test_load_forces_offline_hubs_before_importing_upstream(model_dir: Path, standin: None) -> None:
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


def test_without_cuda_load_refuses_clearly(model_dir: Path, clean_env: None, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(STANDIN))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    os.environ.update(CONDA_PREFIX="/usr/local/cuda", LIDRA_SKIP_INIT="true")
    # the stand-in, like upstream, cannot even be imported without CUDA ...
    with pytest.raises(UnboundLocalError, match="gpu_name"):
        importlib.import_module("sam3d_objects.pipeline.inference_pipeline")
    _forget_upstream()
    # ... so the adapter refuses before importing it, with a reason /ping can show
    with pytest.raises(ArtifactError, match="needs a CUDA GPU"):
        _loaded(model_dir)
    assert "sam3d_objects" not in sys.modules


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA"
)
def test_ping_answers_503_with_the_reason_when_there_is_no_gpu(
    model_dir: Path, start_gen3d_server
) -> None:
    server = start_gen3d_server(
        env={
            "GEN3D_BACKEND": "sam3d",
            "GEN3D_MODEL_DIR": str(model_dir),
            "PYTHONPATH": str(STANDIN),
        },
        wait=False,
    )
    deadline = time.monotonic() + 60
    body = None
    while time.monotonic() < deadline:
        try:
            ping = requests.get(server.url + "/ping", timeout=2)
        except requests.RequestException:
            time.sleep(0.1)
            continue
        if ping.status_code == 503 and "CUDA" in ping.text:
            body = ping.json()
            break
        time.sleep(0.1)
    assert body is not None, server.log()
    assert "needs a CUDA GPU" in str(body)


def test_import_time_environment_is_set_by_the_adapter(model_dir: Path, standin: None) -> None:
    notebook = STANDIN / "notebook" / "inference.py"
    spec = importlib.util.spec_from_file_location("standin_notebook_probe", notebook)
    with pytest.raises(KeyError, match="CONDA_PREFIX"):  # upstream's import-time KeyError
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    with pytest.raises(ModuleNotFoundError, match=r"sam3d_objects\.init"):
        importlib.import_module("sam3d_objects")  # without LIDRA_SKIP_INIT
    _forget_upstream()
    backend = _loaded(model_dir)  # neither variable set by the test: the adapter does it
    assert os.environ["CONDA_PREFIX"] == "/usr/local/cuda"
    assert os.environ["CUDA_HOME"] == "/usr/local/cuda"  # what the notebook derives
    assert isinstance(backend.predict([_sample()])[0], Asset)


@pytest.fixture
def kernels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Make attention kernel packages importable by name (empty packages: the adapter
    only looks them up; the stand-in's attention plays their rules)."""

    def install(*names: str) -> None:
        root = tmp_path / "kernels"
        for name in names:
            (root / name).mkdir(parents=True)
            (root / name / "__init__.py").write_text("")
        monkeypatch.syspath_prepend(str(root))

    return install


@pytest.mark.parametrize(
    ("gpu", "installed", "preset", "expected", "chosen_by", "dtype"),
    [
        ("NVIDIA A10G", ("flash_attn", "xformers"), None, "flash_attn", "gen3d", "bf16"),
        ("NVIDIA A10G", ("xformers",), None, "xformers", "gen3d", "bf16"),
        ("Tesla T4", ("flash_attn", "xformers"), None, "xformers", "gen3d", "fp16"),
        ("NVIDIA L40S", (), None, "sdpa", "gen3d", "bf16"),
        (
            "NVIDIA H100 80GB HBM3",
            ("flash_attn", "xformers"),
            None,
            "flash_attn",
            "upstream",
            "bf16",
        ),
        ("NVIDIA A10G", ("xformers",), "sdpa", "sdpa", "environment", "bf16"),
    ],
)
def test_attention_and_dtype_follow_compute_capability_and_installed_kernels(
    model_dir: Path,
    clean_env: None,
    fake_gpu: Callable[..., None],
    kernels: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    gpu: str,
    installed: tuple[str, ...],
    preset: str | None,
    expected: str,
    chosen_by: str,
    dtype: str,
) -> None:
    monkeypatch.syspath_prepend(str(STANDIN))
    fake_gpu(gpu)
    kernels(*installed)
    if preset:
        os.environ["ATTN_BACKEND"] = preset
    with caplog.at_level(logging.INFO, logger="gen3d.backend"):
        backend = _loaded(model_dir)
    from sam3d_objects.pipeline.inference_pipeline import ATTENTION

    # what upstream's attention modules picked when imported, and what we report
    assert ATTENTION == {"dense": expected, "sparse": expected}
    (asset,) = backend.predict([_sample()])
    assert isinstance(asset, Asset), asset  # the stand-in's kernels accepted the dtype
    major, minor = CAPABILITY[gpu]
    assert asset.metadata["attention"] == {
        "gpu": gpu,
        "capability": f"{major}.{minor}",
        "dense": expected,
        "sparse": expected,
        "chosen_by": chosen_by,
    }
    assert asset.metadata["dtype"] == dtype
    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    assert {d for _, d in _pipeline(backend).autocast_dtypes} == {torch_dtype}
    (line,) = [r.getMessage() for r in caplog.records if "compute capability" in r.getMessage()]
    assert f"compute capability {major}.{minor}" in line and f"dtype {dtype}" in line
    assert f"attention {expected}/{expected}" in line


def test_a_gpu_no_table_names_is_judged_by_its_capability(
    model_dir: Path, clean_env: None, fake_gpu: Callable[..., None], kernels, monkeypatch
) -> None:
    monkeypatch.syspath_prepend(str(STANDIN))
    fake_gpu("NVIDIA Future GPU", capability=(12, 0))
    kernels("flash_attn", "xformers")
    (asset,) = _loaded(model_dir).predict([_sample()])
    assert asset.metadata["attention"]["dense"] == "flash_attn"
    assert asset.metadata["dtype"] == "bf16"


def test_below_capability_8_bf16_is_refused_with_the_reason(
    model_dir: Path, clean_env: None, fake_gpu: Callable[..., None], kernels, monkeypatch
) -> None:
    monkeypatch.syspath_prepend(str(STANDIN))
    fake_gpu("Tesla T4")
    kernels("xformers")
    with pytest.raises(ArtifactError, match=r"compute capability 7\.5\).*bf16 needs compute"):
        _loaded(model_dir, precision="bf16")
    assert "sam3d_objects" not in sys.modules  # refused before the slow load
    _forget_upstream()
    backend = _loaded(model_dir, precision="fp32")  # an explicit precision is applied
    assert _pipeline(backend).dtype == torch.float32
    assert backend.predict([_sample()])[0].metadata["dtype"] == "fp32"


def test_a_flash_attn_gpu_name_without_flash_attn_is_refused(
    model_dir: Path, clean_env: None, fake_gpu: Callable[..., None], kernels, monkeypatch
) -> None:
    monkeypatch.syspath_prepend(str(STANDIN))
    fake_gpu("NVIDIA H100 80GB HBM3")
    kernels("xformers")
    with pytest.raises(ArtifactError, match="flash_attn by this GPU's name, not installed"):
        _loaded(model_dir)


def test_missing_dinov2_cache_is_an_artifact_error(model_dir: Path, standin: None) -> None:
    weights = model_dir / DINOV2_FILES[1]
    weights.unlink()
    seal(model_dir)
    with pytest.raises(ArtifactError, match=r"dinov2_vitl14_reg4_pretrain\.pth"):
        _loaded(model_dir)
    assert "sam3d_objects" not in sys.modules  # refused before upstream could go online


def test_missing_moge_cache_fails_the_load_in_one_line(model_dir: Path, standin: None) -> None:
    (model_dir / MOGE_WEIGHTS).unlink()
    seal(model_dir)
    with pytest.raises(ArtifactError) as caught:
        _loaded(model_dir)
    message = str(caught.value)
    assert "\n" not in message
    assert "models--Ruicheng--moge-vitl/snapshots/*/model.pt" in message
    assert "--hf-home" in message and "--torch-home" not in message
    assert "sam3d_objects" not in sys.modules  # refused before upstream could go online
    # a pipeline.yaml without MoGe (an external pointmap) needs no such cache
    yaml = model_dir / "checkpoints/hf/pipeline.yaml"
    yaml.write_text(yaml.read_text().split("depth_model:")[0])
    seal(model_dir)
    assert isinstance(_loaded(model_dir), Sam3DBackend)


def test_missing_config_or_upstream_is_an_artifact_error(
    tmp_path: Path, model_dir: Path, clean_env: None, fake_gpu: Callable[[str], None]
) -> None:
    fake_gpu("NVIDIA A10G")
    empty = seal(tmp_path / "empty")
    with pytest.raises(ArtifactError, match=r"pipeline\.yaml"):
        _loaded(empty)
    with pytest.raises(ArtifactError, match="not installed"):
        _loaded(model_dir)  # stand-in not on sys.path, no checkout in the model dir


def test_checkout_inside_the_model_dir_is_found(
    model_dir: Path, clean_env: None, fake_gpu: Callable[[str], None]
) -> None:
    fake_gpu("NVIDIA A10G")
    shutil.copytree(STANDIN, model_dir / "sam-3d-objects")
    (model_dir / "pipeline.yaml").write_text(
        (model_dir / "checkpoints/hf/pipeline.yaml").read_text()
    )
    shutil.rmtree(model_dir / "checkpoints")
    seal(model_dir)
    try:
        backend = _loaded(model_dir)
        assert backend._inference.config_file == str(model_dir / "pipeline.yaml")
        assert isinstance(backend.predict([_sample()])[0], Asset)
    finally:
        sys.path[:] = [p for p in sys.path if p != str(model_dir / "sam-3d-objects")]


# -- requests ---------------------------------------------------------------------------


def test_default_request_passes_the_notebook_arguments_and_default_steps(
    model_dir: Path, standin: None
) -> None:
    backend = _loaded(model_dir)
    (asset,) = backend.predict([_sample(seed=7)])
    assert isinstance(asset, Asset)
    (call,) = _pipeline(backend).calls
    assert call["seed"] == 7 and call["mask"] is None and call["decode_formats"] is None
    for key, value in NOTEBOOK_RUN_ARGS.items():
        assert call[key] == value, key
    # steps always explicit: pipeline.yaml's, so a leaked value can never apply
    assert call["stage1_inference_steps"] == 25 and call["stage2_inference_steps"] == 25
    meta = asset.metadata
    assert meta["backend"] == "sam3d" and meta["seed"] == 7
    assert meta["stage1_inference_steps"] == 25 and meta["stage2_inference_steps"] == 25
    assert meta["decode_formats"] == ["mesh", "gaussian"]


def test_glb_and_ply_share_one_frame_and_the_pose_maps_them_into_the_camera(
    model_dir: Path, standin: None
) -> None:
    backend = _loaded(model_dir)
    from sam3d_objects.pipeline import inference_pipeline_pointmap as upstream

    sample = _sample(seed=7)
    (asset,) = backend.predict([sample])
    glb = trimesh.load(io.BytesIO(encode_asset(asset, "glb")), file_type="glb", force="mesh")
    ply = PlyData.read(io.BytesIO(encode_asset(asset, "ply")))["vertex"]
    means = np.stack([ply["x"], ply["y"], ply["z"]], 1)
    # the stand-in decodes the same points as mesh vertices and as Gaussians, in one
    # z-up frame; upstream's to_glb turns only the GLB. Ours must coincide again.
    np.testing.assert_allclose(glb.vertices, means, atol=1e-5)
    assert np.isclose(np.ptp(glb.vertices, axis=0).max(), 1.0, atol=1e-5)
    assert len(glb.faces) == 320 and glb.is_watertight
    # Independently: the camera-frame points by upstream's convention (scipy's rotation
    # from the quaternion), in OpenGL camera axes, against the pose applied to the GLB.
    rows, cols = np.nonzero(sample.mask)
    p_object, _ = upstream.object_points(7, (np.ptp(cols) + 1) / (np.ptp(rows) + 1))
    w, x, y, z = upstream.POSE_ROTATION
    rotation = Rotation.from_quat([x, y, z, w]).as_matrix()
    # the pose after upstream's layout post-optimisation (the stand-in's refinement)
    expected = (
        upstream.REFINED_SCALE * p_object @ rotation + upstream.REFINED_TRANSLATION
    ) @ P3D_TO_GL
    pose = asset.metadata["pose"]
    assert pose["rotation"] == [1.0, 0.0, 0.0, 0.0]
    np.testing.assert_allclose(
        pose["scale"] * glb.vertices + np.array(pose["translation"]), expected, atol=1e-4
    )
    assert asset.metadata["upstream_pose"]["scale"] == pytest.approx(upstream.REFINED_SCALE)
    # each Gaussian's orientation turned with its centre: camera (GL) <- local
    gw, gx, gy, gz = upstream.GAUSSIAN_ROTATION
    local = Rotation.from_quat([gx, gy, gz, gw]).as_matrix()
    quats = np.stack([ply[f"rot_{i}"] for i in range(4)], 1)
    got = Rotation.from_quat(quats[:, [1, 2, 3, 0]]).as_matrix()
    np.testing.assert_allclose(
        got, np.broadcast_to(P3D_TO_GL @ rotation.T @ local, got.shape), atol=1e-5
    )
    # colours survive: the stand-in's mean colour of the masked pixels
    colour = sample.image[sample.mask].mean(0)
    np.testing.assert_array_equal(glb.visual.vertex_colors[0, :3], colour.astype(np.uint8))
    rgb = 0.5 + 0.28209479177387814 * np.stack([ply[f"f_dc_{i}"] for i in range(3)], 1)
    np.testing.assert_allclose(rgb[0] * 255, colour, atol=0.01)
    factor = asset.metadata["normalization"]["factor"]
    np.testing.assert_allclose(ply["scale_0"], np.log(0.01) + np.log(factor), rtol=1e-5)


def test_options_go_to_pipeline_run(model_dir: Path, standin: None) -> None:
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
    assert _pipeline(backend).steps_used == [(12, 7)]
    assert asset.metadata["stage1_inference_steps"] == 12
    assert asset.metadata["stage2_inference_steps"] == 7


def test_steps_of_a_failed_request_do_not_leak_into_the_next(
    model_dir: Path, standin: None
) -> None:
    backend = _loaded(model_dir)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        backend.predict(
            [_sample(seed=OOM_SEED, stage1_inference_steps=3, stage2_inference_steps=4)]
        )
    pipeline = _pipeline(backend)
    assert pipeline.models["slat_generator"].inference_steps == 25  # put back by the adapter
    (asset,) = backend.predict([_sample(seed=1)])
    assert isinstance(asset, Asset)
    assert pipeline.steps_used == [(25, 25)]


def test_one_pose_per_seed_whatever_the_format(model_dir: Path, standin: None) -> None:
    """Upstream refines the pose from the GLB (layout post-optimisation); a PLY request
    that decoded only Gaussians met its `assert glb is not None`, which upstream only
    logs, and got the unrefined pose."""
    backend = _loaded(model_dir)
    from sam3d_objects.pipeline import inference_pipeline_pointmap as upstream

    poses = {}
    for fmt in ("ply", "glb", "obj"):
        (asset,) = backend.predict([_sample(seed=11, fmt=fmt)])
        assert isinstance(asset, Asset), asset
        poses[fmt] = asset.metadata["upstream_pose"]
        assert asset.metadata["layout_postprocess"] is True
    assert _pipeline(backend).layout_errors == []  # upstream's assert never fired
    assert poses["ply"] == poses["glb"] == poses["obj"]
    assert poses["ply"]["scale"] == pytest.approx(upstream.REFINED_SCALE)
    np.testing.assert_allclose(poses["ply"]["translation"], upstream.REFINED_TRANSLATION)


def test_a_gaussian_only_decode_is_refused_while_the_pose_needs_the_mesh(
    model_dir: Path, standin: None
) -> None:
    backend = _loaded(model_dir)
    (result,) = backend.predict([_sample(fmt="ply", decode_formats=["gaussian"])])
    assert isinstance(result, Unprocessable) and "post-optimisation" in str(result)
    assert _pipeline(backend).calls == []


def test_without_layout_post_optimisation_a_ply_request_skips_the_mesh_decoder(
    model_dir: Path, standin: None
) -> None:
    yaml = model_dir / "checkpoints/hf/pipeline.yaml"
    yaml.write_text(yaml.read_text().replace("run_post_optimization", "null"))
    seal(model_dir)
    backend = _loaded(model_dir)
    (asset,) = backend.predict([_sample(fmt="ply")])
    assert _pipeline(backend).calls[0]["decode_formats"] == ["gaussian"]
    assert asset.mesh is None and asset.splat is not None
    assert asset.metadata["layout_postprocess"] is False
    assert encode_asset(asset, "ply").startswith(b"ply\n")
    with pytest.raises(ValueError, match="no mesh"):
        encode_asset(asset, "glb")
    (glb,) = backend.predict([_sample(fmt="glb")])
    assert glb.metadata["upstream_pose"] == asset.metadata["upstream_pose"]


def test_bad_options_fail_only_their_sample(model_dir: Path, standin: None) -> None:
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


def _mask_sample(mask: np.ndarray, seed: int = 7) -> Sample:
    image = synthetic_sample(mask.shape[0], seed=seed).image
    return Sample(image=image, mask=mask, seed=seed, format="glb", options={})


@pytest.mark.parametrize(
    ("region", "cause"),
    [
        ((slice(10, 54), slice(33, 34)), "too thin (at most 2 px across)"),
        ((slice(62, 64), slice(40, 64)), "touches the frame (bottom, right edge)"),
    ],
)
def test_upstreams_empty_reduction_on_a_mask_is_a_422_naming_the_cause(
    model_dir: Path, standin: None, region: tuple[slice, slice], cause: str
) -> None:
    backend = _loaded(model_dir)
    mask = np.zeros((64, 64), bool)
    mask[region] = True
    (result,) = backend.predict([_mask_sample(mask)])
    assert isinstance(result, Unprocessable), result
    assert cause in str(result)
    # it is upstream's own error underneath: torch's reduction over no points
    assert "Expected reduction dim" in str(result.__cause__)
    assert as_client_error(result).status == 422


def test_tiny_masks_are_named_too_small(model_dir: Path, standin: None) -> None:
    backend = _loaded(model_dir)
    mask = np.zeros((256, 256), bool)
    mask[101:103, 101:103] = True  # 4 px, between the stand-in pointmap's samples
    (result,) = backend.predict([_mask_sample(mask)])
    assert isinstance(result, Unprocessable) and "too small (4 px" in str(result)


def test_other_upstream_failures_stay_500_with_details_only_in_the_log(
    model_dir: Path, standin: None
) -> None:
    backend = _loaded(model_dir)
    (result,) = backend.predict([_sample(seed=INTERNAL_ERROR_SEED)])
    assert isinstance(result, ValueError) and not isinstance(result, Unprocessable)
    client = as_client_error(result)
    assert client.status == 500 and "/secret/path" not in client.message


def test_texture_image_is_refused_with_the_reason_before_upstream_runs(
    model_dir: Path, standin: None
) -> None:
    backend = _loaded(model_dir)
    (result,) = backend.predict([_sample(texture="image")])
    assert isinstance(result, Unprocessable) and "nvdiffrast" in str(result)
    assert _pipeline(backend).calls == []


def test_out_of_memory_reaches_the_batcher_in_both_forms(model_dir: Path, standin: None) -> None:
    backend = _loaded(model_dir)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        backend.predict([_sample(seed=OOM_SEED)])
    # spconv / cumm raise a plain RuntimeError; the batcher counts it as capacity too
    with pytest.raises(RuntimeError, match="out of memory") as caught:
        backend.predict([_sample(seed=RUNTIME_OOM_SEED)])
    assert is_out_of_memory(caught.value)


def test_upstream_run_options_table() -> None:
    assert upstream_run_options({}, "glb", True) == {}
    assert upstream_run_options({}, "ply", True) == {}  # pipeline.yaml's formats: mesh too
    assert upstream_run_options({}, "ply", False) == {"decode_formats": ["gaussian"]}
    assert upstream_run_options({"decode_formats": "gaussian"}, "ply", False) == {
        "decode_formats": ["gaussian"]
    }
    with pytest.raises(Unprocessable, match="post-optimisation"):
        upstream_run_options({"decode_formats": "gaussian"}, "ply", True)
    assert upstream_run_options({"stage2_inference_steps": 5}, "obj", True) == {
        "stage2_inference_steps": 5
    }
    with pytest.raises(Unprocessable):
        upstream_run_options({"stage2_inference_steps": True}, "glb", True)


# -- stage offload ----------------------------------------------------------------------


def test_stage_offload_covers_the_depth_model_and_the_mesh_grid(
    model_dir: Path, standin: None, caplog: pytest.LogCaptureFixture
) -> None:
    plain = _loaded(model_dir)
    (expected,) = plain.predict([_sample(seed=5)])
    _forget_upstream()
    backend = _loaded(model_dir, stage_offload=True)
    offload = backend.offload
    assert offload is not None
    assert list(offload.stages) == [
        "compute_pointmap",
        "sample_sparse_structure",
        "sample_slat",
        "decode_slat",
    ]
    pipeline = _pipeline(backend)
    # the depth model is a plain class: its nn.Module is what moves
    assert offload.stages["compute_pointmap"].modules == [pipeline.depth_model.model]
    # the mesh decoder's grid sits in plain attributes that Module.to() never moves
    mesh = pipeline.models["slat_decoder_mesh"]
    decode = offload.stages["decode_slat"]
    assert decode.holders == [mesh.mesh_extractor, mesh.mesh_extractor.mesh_extractor]
    grid = sum(
        t.numel() * t.element_size() for t in (mesh.mesh_extractor.reg_c, mesh.mesh_extractor.reg_v)
    )
    assert decode.plain_tensor_bytes() >= grid > 0
    modules = sum(p.numel() * p.element_size() for p in mesh.parameters())
    assert offload.stage_bytes()["decode_slat"] >= grid + modules
    for method in offload.stages:
        assert hasattr(getattr(pipeline, method), "__wrapped__")
    (asset,) = backend.predict([_sample(seed=5)])
    np.testing.assert_array_equal(asset.mesh.vertices, expected.mesh.vertices)
    assert asset.metadata["stage_offload"] is True
    assert [stage for stage, _ in pipeline.device_log] == list(offload.stages)
    with caplog.at_level(logging.INFO, logger="gen3d.backend"):
        backend.warmup()
    assert any("warm-up sam3d batch=1 took" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_stage_offload_keeps_only_the_running_stage_on_the_gpu(
    tmp_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(STANDIN))
    model = write_model_dir(tmp_path / "model")
    yaml = model / "checkpoints/hf/pipeline.yaml"
    yaml.write_text(yaml.read_text().replace("device: cpu", "device: cuda"))
    seal(model)
    backend = Sam3DBackend()
    backend.load(model, Settings(backend="sam3d", model_dir=model, stage_offload=True))
    backend.predict([_sample()])
    log = dict(_pipeline(backend).device_log)
    assert log["compute_pointmap"]["depth_model.model"] == "cuda"
    assert log["compute_pointmap"]["ss_generator"] == "cpu"
    assert log["sample_sparse_structure"]["ss_generator"] == "cuda"
    assert log["sample_sparse_structure"]["depth_model.model"] == "cpu"
    assert log["sample_slat"]["slat_generator"] == "cuda"
    assert log["sample_slat"]["ss_generator"] == "cpu"
    assert log["decode_slat"]["slat_decoder_mesh"] == "cuda"
    assert log["decode_slat"]["mesh_extractor.reg_c"] == "cuda"
    assert log["sample_slat"]["mesh_extractor.reg_c"] == "cpu"


def test_ply_reader_rejects_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="not a PLY"):
        read_binary_ply(b"hello")
    with pytest.raises(ValueError, match="little-endian"):
        read_binary_ply(b"ply\nformat ascii 1.0\nelement vertex 0\nend_header\n")
