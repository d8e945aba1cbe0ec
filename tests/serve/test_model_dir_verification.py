"""The server loads only what a manifest vouches for: a model directory without
gen3d-manifest.json, or with a file the manifest does not list (weights, configs, the
compile cache's code), is refused unless GEN3D_ALLOW_UNVERIFIED_MODEL=1 says otherwise."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from gen3d.model_opt.proxy_model import init_proxy_model
from gen3d.serve.artifact.manifest import MANIFEST_FILE
from gen3d.serve.backends.proxy.backend import ProxyBackend
from gen3d.serve.backends.proxy.model import config_for
from gen3d.serve.backends.proxy.weights import WEIGHTS_FILE
from gen3d.serve.errors import ArtifactError
from gen3d.serve.settings import Settings


@pytest.fixture
def proxy_dir(tmp_path: Path) -> Path:
    out = tmp_path / "proxy"
    init_proxy_model(config_for("tiny"), 0, out)
    return out


def load(model_dir: Path, **settings: object) -> ProxyBackend:
    backend = ProxyBackend()
    backend.load(
        model_dir, Settings(backend="proxy", model_dir=model_dir, device="cpu", **settings)
    )
    return backend


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_an_initialised_proxy_model_carries_its_manifest_and_loads(proxy_dir: Path) -> None:
    assert (proxy_dir / MANIFEST_FILE).is_file()
    assert load(proxy_dir).model is not None


def test_a_directory_without_a_manifest_is_refused_even_with_a_flipped_weight_byte(
    proxy_dir: Path,
) -> None:
    (proxy_dir / MANIFEST_FILE).unlink()
    flip_a_byte(proxy_dir / WEIGHTS_FILE)  # nothing could notice this without a manifest
    with pytest.raises(ArtifactError, match=r"no gen3d-manifest\.json") as caught:
        load(proxy_dir)
    assert caught.value.public == "the model directory has no gen3d-manifest.json"
    assert load(proxy_dir, allow_unverified_model=True).model is not None  # said explicitly


def test_a_file_the_manifest_does_not_list_is_refused(proxy_dir: Path) -> None:
    planted = proxy_dir / "compile_cache" / "inductor" / "xx" / "kernel.py"
    planted.parent.mkdir(parents=True)
    planted.write_text("import os  # code the compile-cache restore would copy and run\n")
    with pytest.raises(ArtifactError, match=r"compile_cache/inductor/xx/kernel\.py not listed"):
        load(proxy_dir)


def test_the_server_says_why_without_the_path(start_gen3d_server, proxy_dir: Path) -> None:
    (proxy_dir / MANIFEST_FILE).unlink()
    server = start_gen3d_server(
        {"GEN3D_BACKEND": "proxy", "GEN3D_MODEL_DIR": str(proxy_dir), "GEN3D_DEVICE": "cpu"},
        wait=False,
    )
    deadline = time.monotonic() + 60
    while "model failed to load" not in server.log(100_000):
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.1)
    ping = requests.get(server.url + "/ping", timeout=5)
    assert ping.status_code == 503 and "no gen3d-manifest.json" in ping.text
    assert str(proxy_dir) not in ping.text and "Retry-After" not in ping.headers


@pytest.mark.parametrize("kind", ["unlisted weights file", "compile cache directory"])
def test_a_symbolic_link_is_refused(proxy_dir: Path, tmp_path: Path, kind: str) -> None:
    """A link is followed only when opened, so the manifest's hashes cannot vouch for it:
    a linked weights file left out of the manifest, or a linked compile_cache/ (code)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if kind == "unlisted weights file":
        (elsewhere / "extra.safetensors").write_bytes(b"not listed")
        (proxy_dir / "extra.safetensors").symlink_to(elsewhere / "extra.safetensors")
    else:
        (elsewhere / "inductor").mkdir()
        (elsewhere / "inductor" / "kernel.py").write_text("import os\n")
        (proxy_dir / "compile_cache").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ArtifactError, match="symbolic link") as caught:
        load(proxy_dir)
    assert caught.value.public == "the model directory holds a symbolic link"
    assert load(proxy_dir, allow_unverified_model=True).model is not None  # said explicitly
