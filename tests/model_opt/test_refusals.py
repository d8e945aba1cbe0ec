"""Corrupt or mismatched artifacts are refused whole (ArtifactError in process; a real
server stays at /ping 503 with the reason in its log); bf16 below sm80 is refused."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests
import torch

from gen3d.model_opt.optimize import build_proxy_artifact
from gen3d.serve.artifact.manifest import MANIFEST_FILE
from gen3d.serve.artifact.precision import OptimizeError, check_precision
from gen3d.serve.artifact.variant import Variant
from gen3d.serve.backends.proxy.backend import ProxyBackend
from gen3d.serve.errors import ArtifactError
from gen3d.serve.settings import Settings


@pytest.fixture
def artifact(tiny_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "artifact"
    build_proxy_artifact(tiny_dir, out, Variant("fp16"), torch.device("cpu"), max_batch_size=1)
    return out


def load(model_dir: Path, **settings: object) -> ProxyBackend:
    backend = ProxyBackend()
    backend.load(model_dir, Settings(backend="proxy", model_dir=model_dir, **settings))
    return backend


def flip_byte(path: Path, offset: int = -100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupt_weights_refused(artifact: Path) -> None:
    flip_byte(artifact / "model.safetensors")
    with pytest.raises(ArtifactError, match=r"model.safetensors does not match its sha256"):
        load(artifact)


def test_truncated_and_missing_files_refused(artifact: Path) -> None:
    (artifact / "config.json").write_text((artifact / "config.json").read_text()[:-10])
    with pytest.raises(ArtifactError, match=r"config.json is .* bytes, the manifest says"):
        load(artifact)
    (artifact / "config.json").unlink()
    with pytest.raises(ArtifactError, match=r"config.json is listed in the manifest but missing"):
        load(artifact)


def test_manifest_mismatch_refused(artifact: Path, tiny_dir: Path, tmp_path: Path) -> None:
    # Weights of another variant under this manifest: hashes match, content does not.
    other = tmp_path / "int8"
    build_proxy_artifact(
        tiny_dir,
        other,
        Variant("fp32", "int8-weight", "torchao"),
        torch.device("cpu"),
        max_batch_size=1,
    )
    manifest = json.loads((artifact / MANIFEST_FILE).read_text())
    manifest["applied"]["variant"] = json.loads((other / MANIFEST_FILE).read_text())["applied"][
        "variant"
    ]
    (artifact / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="weights were written for"):
        load(artifact)
    manifest["backend"] = "sam3d"
    (artifact / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="optimised for backend 'sam3d'"):
        load(artifact)
    (artifact / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ArtifactError, match="unreadable manifest"):
        load(artifact)


def test_explicit_precision_that_disagrees_is_refused(artifact: Path) -> None:
    with pytest.raises(ArtifactError, match=r"GEN3D_PRECISION=fp32 but .* fp16"):
        load(artifact, precision="fp32")
    assert load(artifact, precision="fp16").dtype == torch.float16


def test_bf16_refused_below_sm80_naming_fp16(tiny_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(OptimizeError, match="use --precision fp16"):
        check_precision("bf16", torch.device("cpu"), capability=(7, 5))
    assert check_precision("bf16", torch.device("cpu"), capability=(8, 0)) == torch.bfloat16
    assert check_precision("fp16", torch.device("cpu"), capability=(7, 5)) == torch.float16
    with pytest.raises(OptimizeError, match="fp16"):
        build_proxy_artifact(
            tiny_dir, tmp_path / "o", Variant("bf16"), torch.device("cpu"), capability=(7, 5)
        )
    assert not (tmp_path / "o").exists()  # refused before anything was written


def wait_for_failure(server, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if "model failed to load" in server.log():
            return
        time.sleep(0.1)
    raise AssertionError(f"server did not report a failed load:\n{server.log()}")


def test_server_refuses_corrupt_artifact_with_503(artifact: Path, start_gen3d_server) -> None:
    flip_byte(artifact / "model.safetensors")
    server = start_gen3d_server(
        {"GEN3D_BACKEND": "proxy", "GEN3D_MODEL_DIR": str(artifact), "GEN3D_DEVICE": "cpu"},
        wait=False,
    )
    wait_for_failure(server)
    assert requests.get(server.url + "/ping", timeout=5).status_code == 503
    assert "model.safetensors does not match its sha256" in server.log()
    assert server.process.poll() is None  # still up, answering 503, never half-loaded
