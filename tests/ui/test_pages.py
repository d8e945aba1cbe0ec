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
from gen3d_testing import glb_json, rgba_png
from plyfile import PlyData

from gen3d.serve.ui.assets import viewer_installed
from gen3d.serve.ui.pages import VIEWABLE_MAX_BYTES, VIEWABLE_PATH
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
    from gen3d.serve.local_server import start_server

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


# ------------------------------------- local pages answer only this machine's browser

REBOUND_HOST = "rebind.attacker.example"  # a site whose DNS name now points at 127.0.0.1
ATTACKER_ORIGIN = "http://attacker.example"


def assert_refused(response: requests.Response, code: str) -> None:
    assert response.status_code == 403, (response.status_code, response.text[:200])
    assert response.json()["error"]["code"] == code


def test_a_rebound_host_name_is_refused(ui_server) -> None:
    for path in ("/", "/openapi.yaml", "/ui/static/tryit.js", "/ping"):
        assert_refused(
            requests.get(ui_server.url + path, headers={"Host": REBOUND_HOST}, timeout=10),
            "forbidden_host",
        )
    port = ui_server.url.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        response = requests.get(ui_server.url + "/", headers={"Host": host}, timeout=10)
        assert response.status_code == 200, host


def test_gen3d_ui_hosts_names_the_other_hosts_answered(start_gen3d_server) -> None:
    server = start_gen3d_server({"GEN3D_UI": "1", "GEN3D_UI_HOSTS": "devbox.lan"})
    port = server.url.rsplit(":", 1)[1]
    named = requests.get(server.url + "/", headers={"Host": f"devbox.lan:{port}"}, timeout=10)
    assert named.status_code == 200
    assert_refused(
        requests.get(server.url + "/", headers={"Host": REBOUND_HOST}, timeout=10),
        "forbidden_host",
    )


def test_another_origin_can_neither_run_inference_nor_upload(ui_server) -> None:
    files = {"image": rgba_png(48)}
    cross = {"Origin": ATTACKER_ORIGIN}
    assert_refused(
        requests.post(ui_server.url + "/invocations", files=files, headers=cross, timeout=30),
        "forbidden_origin",
    )
    # another local server is another origin; its page's fetch says so (behind the front
    # the Host header has no port left to compare)
    other_port = {"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"}
    assert_refused(
        requests.post(ui_server.url + "/invocations", files=files, headers=other_port, timeout=30),
        "forbidden_origin",
    )
    same = {"Origin": ui_server.url, "Sec-Fetch-Site": "same-origin"}  # the page's own fetch
    ok = requests.post(ui_server.url + "/invocations", files=files, headers=same, timeout=60)
    assert ok.status_code == 200, ok.text[:200]
    upload = b"ply\n" + b"\0" * (20 * 1024 * 1024)
    assert_refused(
        requests.post(ui_server.url + VIEWABLE_PATH, data=upload, headers=cross, timeout=60),
        "forbidden_origin",
    )


def test_a_refused_viewer_upload_is_drained_past_the_request_limit() -> None:
    """The app answers a cross-origin upload before reading its body; it then reads the
    body to its end (the viewer's cap, not the 1 MB request limit). Closing on unread data
    reset the connection under nginx, which was still sending the body, and now and then
    nginx lost the 403: its 502, shown as its own 413 page (seen once in a full run)."""
    import io

    from gen3d.serve.backends.silhouette import SilhouetteBackend
    from gen3d.serve.http.app import create_app
    from gen3d.serve.model.runtime import ModelRuntime
    from gen3d.serve.settings import Settings

    runtime = ModelRuntime(
        Settings(ui=True, max_body_mb=1, warmup=False), backend=SilhouetteBackend()
    )
    size = 20 * 1024 * 1024
    body = io.BytesIO(b"ply\n" + b"\0" * (size - 4))
    response = (
        create_app(runtime)
        .test_client()
        .post(
            VIEWABLE_PATH,
            input_stream=body,
            content_length=size,
            headers={"Origin": ATTACKER_ORIGIN, "Content-Type": "application/ply"},
        )
    )
    assert response.status_code == 403, response.text[:200]
    assert body.tell() == size  # read to the end, so the worker closes on nothing unread


def test_viewer_uploads_are_capped_at_what_a_result_needs(ui_server) -> None:
    assert VIEWABLE_MAX_BYTES <= 64 * 1024 * 1024
    response = requests.post(
        ui_server.url + VIEWABLE_PATH,
        data=b"\0" * (VIEWABLE_MAX_BYTES + 1),
        headers={"Content-Type": "application/ply"},
        timeout=60,
    )
    assert response.status_code == 413, response.text[:200]
    assert response.json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize("path", ["/", "/docs/", "/openapi.yaml", "/ui/static/tryit.js"])
def test_every_page_sends_the_security_headers(ui_server, path: str) -> None:
    response = requests.get(ui_server.url + path, timeout=10)
    assert response.status_code == 200
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    policy = dict(
        [*part.split(" ", 1), ""][:2]
        for part in (p.strip() for p in response.headers["Content-Security-Policy"].split(";"))
    )
    assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"
    assert policy["default-src"] == "'self'"
    if not path.startswith("/docs"):  # Swagger UI's page alone starts from an inline script
        assert "unsafe-inline" not in policy["script-src"]


def test_gen3d_view_checks_host_and_origin_and_sends_the_headers(tmp_path) -> None:
    if not viewer_installed():
        pytest.skip("the viewer's script is not installed (make ui-assets)")
    import threading

    from werkzeug.serving import make_server

    from gen3d.serve.ui.view import view_app

    glb = trimesh.creation.box().export(file_type="glb")
    server = make_server("127.0.0.1", 0, view_app(glb, "box.glb"), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        assert_refused(
            requests.get(url + "/model.glb", headers={"Host": REBOUND_HOST}, timeout=10),
            "forbidden_host",
        )
        assert_refused(
            requests.get(url + "/model.glb", headers={"Origin": ATTACKER_ORIGIN}, timeout=10),
            "forbidden_origin",
        )
        assert requests.get(url + "/model.glb", timeout=10).content == glb
        page = requests.get(url + "/", timeout=10)
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        (nonce,) = re.findall(r"'nonce-([^']+)'", page.headers["Content-Security-Policy"])
        inline = re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", page.text)
        assert inline and all(f'nonce="{nonce}"' in attrs for attrs in inline if "module" in attrs)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow  # starts `gen3d serve`: servers of its own
@pytest.mark.parametrize(("flags", "page_status"), [((), 200), (("--no-ui",), 404)])
def test_gen3d_serve_serves_the_pages_unless_told_not_to(tmp_path, flags, page_status) -> None:
    from gen3d.serve.local_server import ManagedProcess, free_port

    port = free_port()
    cmd = [sys.executable, "-m", "gen3d.cli", "serve", "--port", str(port), *flags]
    server = ManagedProcess(cmd, port, tmp_path / "serve.log", env={"GEN3D_UI": ""})
    try:
        server.wait_ready(60)
        assert requests.get(server.url + "/", timeout=10).status_code == page_status
        assert requests.get(server.url + "/docs/", timeout=10).status_code == page_status
    finally:
        server.stop(timeout_s=10)


def test_docs_without_the_slash_redirects_to_the_same_host_and_port_through_the_front(
    ui_server,
) -> None:
    """`/docs` answers 308 to `/docs/`; behind nginx that Location must keep the port the
    client used, or the browser is sent to port 80 (`Host $host` dropped it)."""
    from gen3d.serve.process.front import nginx_binary

    if nginx_binary() is None:
        pytest.skip("needs nginx (make front)")
    first = requests.get(ui_server.url + "/docs", allow_redirects=False, timeout=10)
    assert first.status_code in (301, 302, 307, 308), first.text
    assert first.headers["Server"].startswith("nginx")  # answered through the front
    location = requests.compat.urljoin(ui_server.url + "/docs", first.headers["Location"])
    assert location == ui_server.url + "/docs/"
    followed = requests.get(ui_server.url + "/docs", timeout=10)
    assert followed.status_code == 200 and "SwaggerUIBundle" in followed.text


def test_the_viewer_is_committed_pinned_by_digest_with_its_licence() -> None:
    """No npm on the way to the demo: the bundle ships in the package, as fetched."""
    import hashlib

    from gen3d.serve.ui import assets

    assert hashlib.sha256(assets.VIEWER_JS.read_bytes()).hexdigest() == assets.VIEWER_SHA256
    licence = (assets.VIEWER_JS.parent / "model-viewer.LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0" in licence
    script = (Path(__file__).resolve().parents[2] / "tools" / "vendor-viewer.sh").read_text()
    assert f"VERSION={assets.VIEWER_VERSION}\n" in script
