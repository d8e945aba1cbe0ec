"""Packaging round-trips through a tar.gz and through S3 (real moto server) into a
model dir the backend loads after verifying every checksum."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import boto3
import numpy as np
import pytest
import torch

from gen3d.cli.main import main
from gen3d.model_opt.optimize import build_proxy_artifact
from gen3d.model_opt.package import download_prefix
from gen3d.serve.artifact.manifest import MANIFEST_FILE
from gen3d.serve.artifact.variant import Variant
from gen3d.serve.backends.base import synthetic_sample
from gen3d.serve.backends.proxy.backend import ProxyBackend
from gen3d.serve.errors import ArtifactError
from gen3d.serve.settings import Settings


@pytest.fixture(scope="module")
def artifact(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pkg") / "artifact"
    build_proxy_artifact(
        tiny_dir,
        out,
        Variant("fp32", "int8-dynamic", "pytorch"),
        torch.device("cpu"),
        max_batch_size=1,
    )
    return out


def vertices(model_dir: Path) -> np.ndarray:
    backend = ProxyBackend()
    backend.load(model_dir, Settings(backend="proxy", model_dir=model_dir, max_batch_size=1))
    (asset,) = backend.predict([synthetic_sample(96, seed=3)])
    return asset.mesh.vertices


@pytest.fixture(scope="module")
def artifact_vertices(artifact: Path) -> np.ndarray:
    """The artifact's own answer, computed once: each round trip compares against it."""
    return vertices(artifact)


def test_a_manifest_records_library_versions_without_importing_torch(tmp_path: Path) -> None:
    """torch's and torchao's versions come from their metadata: importing them costs
    seconds, and `gen3d sam3d prepare` and `gen3d package` write manifests with no use for
    either (the quantized engine is recorded where torch built the model)."""
    import subprocess
    import sys
    from importlib import metadata

    (tmp_path / "weights.bin").write_bytes(b"w")
    code = (
        "import json, sys; from pathlib import Path;"
        "from gen3d.model_opt.manifest import write_manifest;"
        f"m = write_manifest(Path({str(tmp_path)!r}), 'proxy', {{}});"
        "print(json.dumps([m['libraries'], sorted({'torch', 'torchao'} & set(sys.modules))]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    libraries, imported = json.loads(out.stdout)
    assert libraries["torchao"] == metadata.version("torchao")
    assert libraries["torch"] == torch.__version__ and imported == []
    assert "quantized_engine" not in libraries  # no torch: nothing was quantized here


@pytest.mark.slow  # packs and re-runs the proxy model
def test_tar_gz_round_trip(artifact: Path, artifact_vertices, tmp_path: Path, capsys) -> None:
    archive = tmp_path / "model.tar.gz"
    assert main(["package", "--model-dir", str(artifact), "--out", str(archive)]) == 0
    assert '"ModelDataUrl"' in capsys.readouterr().out
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        assert all(not n.startswith(("/", "..")) for n in names)
        tar.extractall(tmp_path / "extracted", filter="data")
    assert set(names) == {MANIFEST_FILE, "config.json", "model.safetensors"}
    np.testing.assert_array_equal(vertices(tmp_path / "extracted"), artifact_vertices)


@pytest.mark.slow  # packs and re-runs the proxy model
def test_plain_model_dir_gets_a_manifest(tiny_dir: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"  # weights and config only, as a hand-made model dir has
    shutil.copytree(tiny_dir, plain)
    (plain / MANIFEST_FILE).unlink()
    archive = tmp_path / "plain.tar.gz"
    assert main(["package", "--model-dir", str(plain), "--out", str(archive)]) == 0
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    manifest = json.loads((tmp_path / "x" / MANIFEST_FILE).read_text())
    assert manifest["backend"] == "proxy" and manifest["applied"] == {"variant": None}
    assert set(manifest["files"]) == {"config.json", "proxy.safetensors"}
    np.testing.assert_array_equal(vertices(tmp_path / "x"), vertices(tiny_dir))
    (tmp_path / "x" / "proxy.safetensors").write_bytes(b"\0" * 8)
    with pytest.raises(ArtifactError, match="manifest says"):
        vertices(tmp_path / "x")


@pytest.mark.slow  # packs and re-runs the proxy model
def test_s3_prefix_round_trip_and_idempotent(
    artifact: Path, artifact_vertices, tmp_path: Path, aws: str, capsys
) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")  # AWS_ENDPOINT_URL -> moto
    s3.create_bucket(Bucket="models")
    url = "s3://models/proxy/int8/"
    assert main(["package", "--model-dir", str(artifact), "--out", url, "--uncompressed"]) == 0
    out = capsys.readouterr().out
    assert "uploaded 2, unchanged 0" in out and '"CompressionType": "None"' in out
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="models")["Contents"]}
    assert keys == {f"proxy/int8/{n}" for n in (MANIFEST_FILE, "config.json", "model.safetensors")}
    assert download_prefix(s3, "models", "proxy/int8", tmp_path / "m") == 3
    np.testing.assert_array_equal(vertices(tmp_path / "m"), artifact_vertices)
    assert main(["package", "--model-dir", str(artifact), "--out", url, "--uncompressed"]) == 0
    assert "uploaded 0, unchanged 2" in capsys.readouterr().out


def test_s3_tar_gz(artifact: Path, artifact_vertices, tmp_path: Path, aws: str) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="models")
    assert (
        main(["package", "--model-dir", str(artifact), "--out", "s3://models/p/model.tar.gz"]) == 0
    )
    s3.download_file("models", "p/model.tar.gz", str(tmp_path / "m.tar.gz"))
    with tarfile.open(tmp_path / "m.tar.gz") as tar:
        tar.extractall(tmp_path / "m", filter="data")
    np.testing.assert_array_equal(vertices(tmp_path / "m"), artifact_vertices)


def test_sam3d_package_bundles_offline_caches(tmp_path: Path) -> None:
    model = tmp_path / "sam3d"
    (model / "checkpoints/hf").mkdir(parents=True)
    (model / "checkpoints/hf/pipeline.yaml").write_text("dtype: float16\n")
    torch_home = tmp_path / "th"
    (torch_home / "hub/checkpoints").mkdir(parents=True)
    (torch_home / "hub/checkpoints/dinov2.pth").write_bytes(b"w" * 10)
    hf_home = tmp_path / "hf"
    (hf_home / "hub").mkdir(parents=True)
    (hf_home / "hub/moge.bin").write_bytes(b"m" * 10)
    archive = tmp_path / "sam3d.tar.gz"
    assert (
        main(
            [
                "package",
                "--model-dir",
                str(model),
                "--out",
                str(archive),
                "--torch-home",
                str(torch_home),
                "--hf-home",
                str(hf_home),
            ]
        )
        == 0
    )
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        tar.extractall(tmp_path / "x", filter="data")
    assert {
        "checkpoints/hf/pipeline.yaml",
        "caches/torch/hub/checkpoints/dinov2.pth",
        "caches/huggingface/hub/moge.bin",
        MANIFEST_FILE,
    } == names
    from gen3d.serve.artifact.manifest import verify

    assert verify(tmp_path / "x", "sam3d")["backend"] == "sam3d"


def test_package_cli_errors(tiny_dir: Path, capsys) -> None:
    assert main(["package", "--model-dir", str(tiny_dir), "--out", "model.zip"]) == 2
    assert (
        main(["package", "--model-dir", str(tiny_dir), "--out", "x.tar.gz", "--uncompressed"]) == 2
    )
    err = capsys.readouterr().err
    assert "must end in .tar.gz" in err and "needs an s3://" in err
