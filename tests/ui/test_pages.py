"""The try-it page, /docs and /openapi.yaml on a real server: served only when asked, and
from our own files (nothing points off the machine)."""

from __future__ import annotations

import io
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import requests
import trimesh
import yaml
from gen3d_testing import glb_json
from plyfile import PlyData

from gen3d.serve.ui.assets import viewer_installed
from gen3d.serve.ui.viewable import SH_C0

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
ROUTES = {"/ping", "/execution-parameters", "/invocations"}


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [v for k, v in attrs if k in ("src", "href") and v]


def links_of(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    return parser.links


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory, server_stopper):
    from gen3d.serve.launcher import start_server

    # A request limit below the size of a PLY result: the page still gets it converted.
    server = start_server(
        env={"GEN3D_UI": "1", "GEN3D_MAX_BODY_MB": "1"},
        log_path=tmp_path_factory.mktemp("ui") / "server.log",
    )
    server.wait_ready(60)
    yield server
    server_stopper.stop(server)


def test_pages_are_off_unless_gen3d_ui_is_set(default_server) -> None:
    srv = default_server
    for path in ("/", "/docs/", "/openapi.yaml", "/ui/static/tryit.js"):
        response = requests.get(srv.url + path, timeout=10)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"


def test_try_it_page_loads_only_local_files(ui_server) -> None:
    page = requests.get(ui_server.url + "/", timeout=10)
    assert page.status_code == 200 and "<model-viewer" in page.text
    links = links_of(page.text)
    assert "/ui/static/vendor/model-viewer.min.js" in links
    for link in links:
        assert not re.match(r"^(https?:)?//", link), f"off-machine link {link}"
        if link.startswith("/"):
            assert requests.get(ui_server.url + link, timeout=10).status_code == 200, link
    if viewer_installed():
        assert "missing-viewer" not in page.text


def test_docs_are_swagger_ui_from_local_files_for_our_openapi(ui_server) -> None:
    page = requests.get(ui_server.url + "/docs/", timeout=10)
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    for link in links_of(page.text):
        assert not re.match(r"^(https?:)?//", link), f"off-machine link {link}"
        assert requests.get(ui_server.url + link, timeout=10).status_code == 200, link
    assert '"validatorUrl": null' in page.text  # no spec sent to an online validator
    spec = yaml.safe_load(requests.get(ui_server.url + "/openapi.yaml", timeout=10).text)
    assert set(spec["paths"]) == ROUTES


def test_a_splat_ply_is_converted_to_one_coloured_marker_per_gaussian(ui_server) -> None:
    form = {"format": "ply"}
    files = {
        "image": (SAMPLES / "coffee.png").read_bytes(),
        "mask": (SAMPLES / "coffee_mask.png").read_bytes(),
    }
    ply = requests.post(ui_server.url + "/invocations", data=form, files=files, timeout=60)
    assert ply.status_code == 200, ply.text
    splats = PlyData.read(io.BytesIO(ply.content))["vertex"]
    assert len(ply.content) > 1024 * 1024  # over GEN3D_MAX_BODY_MB, yet converted below
    glb = requests.post(
        ui_server.url + "/ui/viewable.glb",
        data=ply.content,
        headers={"Content-Type": "application/ply"},
        timeout=60,
    )
    assert glb.status_code == 200 and glb.headers["Content-Type"] == "model/gltf-binary"
    assert glb_json(glb.content)["asset"]["version"] == "2.0"
    mesh = trimesh.load(io.BytesIO(glb.content), file_type="glb", force="mesh", process=False)
    assert len(mesh.faces) == 8 * splats.count  # one octahedron per Gaussian
    dc = np.stack([splats[f"f_dc_{i}"] for i in range(3)], axis=1)
    expected = np.clip((0.5 + SH_C0 * dc) * 255, 0, 255)
    got = mesh.visual.vertex_colors[::6, :3].astype(float)  # first corner of each marker
    assert np.abs(got - expected).max() <= 1.0
    centres = mesh.vertices.reshape(-1, 6, 3).mean(axis=1)
    xyz = np.stack([splats["x"], splats["y"], splats["z"]], axis=1)
    assert np.allclose(centres, xyz, atol=1e-5)


def test_viewable_refuses_what_it_cannot_read_with_the_reason(ui_server) -> None:
    response = requests.post(
        ui_server.url + "/ui/viewable.glb",
        data=b"\x00\x01 not a model",
        headers={"Content-Type": "application/octet-stream"},
        timeout=10,
    )
    assert response.status_code == 422
    assert response.json()["error"]["message"] == "not a GLB, PLY or OBJ file"


@pytest.mark.slow  # starts `gen3d serve`: servers of its own
@pytest.mark.parametrize(("flags", "page_status"), [((), 200), (("--no-ui",), 404)])
def test_gen3d_serve_serves_the_pages_unless_told_not_to(tmp_path, flags, page_status) -> None:
    from gen3d.serve.launcher import ManagedProcess, free_port

    port = free_port()
    cmd = [sys.executable, "-m", "gen3d.cli", "serve", "--port", str(port), *flags]
    server = ManagedProcess(cmd, port, tmp_path / "serve.log", env={"GEN3D_UI": ""})
    try:
        server.wait_ready(60)
        assert requests.get(server.url + "/", timeout=10).status_code == page_status
        assert requests.get(server.url + "/docs/", timeout=10).status_code == page_status
    finally:
        server.stop(timeout_s=10)
