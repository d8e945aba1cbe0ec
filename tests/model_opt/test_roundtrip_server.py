"""Each variant round-trips: optimise -> real gunicorn server on OUT -> the served meshes
equal the in-process optimised model's (geometry from the GLB: metadata has timings)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import requests
import torch
from gen3d_testing import photo_and_mask, rgba_png

from gen3d.model_opt.optimize import build_proxy_artifact
from gen3d.model_opt.proxy_model import init_proxy_model
from gen3d.serve.artifact.variant import Variant
from gen3d.serve.backends.base import Sample
from gen3d.serve.backends.proxy.model import config_for
from gen3d.serve.outputs.encoding import encode_asset

VARIANTS = [
    Variant("fp16"),
    Variant("bf16"),
    Variant("fp32", "int8-weight", "torchao"),
    Variant("fp32", "int8-dynamic", "torchao"),
    Variant("fp32", "int8-dynamic", "pytorch"),
]
SEED = 5


def server_env(model_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "GEN3D_BACKEND": "proxy",
        "GEN3D_MODEL_DIR": str(model_dir),
        "GEN3D_DEVICE": "cpu",
        "GEN3D_MAX_BATCH_SIZE": "2",
        **extra,
    }


def served_and_local(server, backend, glb_geometry):
    body = rgba_png(96, seed=1)
    response = requests.post(
        server.url + "/invocations",
        data=body,
        headers={
            "Content-Type": "image/png",
            "Accept": "model/gltf-binary",
            "X-Amzn-SageMaker-Custom-Attributes": f"seed={SEED}",
        },
        timeout=60,
    )
    assert response.status_code == 200, response.text
    image, mask = photo_and_mask(96, seed=1)
    (asset,) = backend.predict([Sample(image=image, mask=mask, seed=SEED)])
    return glb_geometry(response.content), glb_geometry(encode_asset(asset, "glb"))


@pytest.mark.slow  # each builds an artifact and starts a proxy server that warms up
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.label)
def test_variant_served_equals_in_process(
    variant, tiny_dir, tmp_path, start_gen3d_server, glb_geometry
) -> None:
    out = tmp_path / "artifact"
    result = build_proxy_artifact(tiny_dir, out, variant, torch.device("cpu"), max_batch_size=2)
    assert (out / "gen3d-manifest.json").is_file()
    assert result.manifest["applied"]["variant"] == variant.to_dict()
    server = start_gen3d_server(server_env(out))
    (served_v, served_f), (local_v, local_f) = served_and_local(
        server, result.backend, glb_geometry
    )
    assert np.array_equal(served_f, local_f)
    # Same weights, same kernels: identical up to float formatting (observed exactly 0).
    np.testing.assert_allclose(served_v, local_v, atol=1e-6)
    assert f"as {variant.label}" in server.log()


@pytest.mark.slow  # ~30 s: inductor compiles 5 graphs on 2 CPU cores
@pytest.mark.heavy
def test_compiled_artifact_restores_its_cache(
    tmp_path, start_gen3d_server, glb_geometry, monkeypatch
) -> None:
    """The one compile test, batch 1 only, on the tiny model cut to one block per stage
    and one upsampling: the same four stages, each compiled, with a quarter fewer kernels
    for g++ to build (the compile took 40 CPU-seconds of the suite's ~460 at tiny)."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "unused"))  # restored after
    small = tmp_path / "small"
    init_proxy_model(
        config_for(
            "tiny", encoder_depth=1, stage1_depth=1, stage2_depth=1, decoder_channels=(8, 8)
        ),
        0,
        small,
    )
    out = tmp_path / "compiled"
    variant = Variant("fp32", compile=True)
    result = build_proxy_artifact(small, out, variant, torch.device("cpu"), max_batch_size=1)
    cached = [n for n in result.manifest["files"] if n.startswith("compile_cache/inductor/")]
    assert any("/fxgraph/" in n for n in cached), cached  # compiled graphs are shipped
    # A fresh, empty inductor dir for the server: only the artifact's cache can help.
    env = server_env(
        out,
        GEN3D_MAX_BATCH_SIZE="1",
        TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "server-inductor"),
        # the reference below runs with this process's threads: the same count gives the
        # same float reduction order (one batching worker otherwise takes every core)
        GEN3D_TORCH_THREADS=str(torch.get_num_threads()),
    )
    server = start_gen3d_server(env, timeout_s=240)
    (served_v, served_f), (local_v, local_f) = served_and_local(
        server, result.backend, glb_geometry
    )
    assert np.array_equal(served_f, local_f)
    np.testing.assert_allclose(served_v, local_v, atol=1e-6)
    log = server.log(20_000)
    assert "compile cache restored" in log and "fp32+compile" in log
