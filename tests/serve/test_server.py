"""The SageMaker contract against a real gunicorn process on 127.0.0.1."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
import trimesh
from gen3d_testing import b64, glb_json, json_instance, photo_and_mask, png_bytes, rgba_png
from plyfile import PlyData

from gen3d.serve.local_server import free_port, gunicorn_workers

REPO = Path(__file__).resolve().parents[2]
ATTRS = "X-Amzn-SageMaker-Custom-Attributes"


@pytest.fixture(scope="module")
def server(server_stopper):
    from gen3d.serve.local_server import start_server

    srv = start_server(
        env={
            "GEN3D_MAX_BODY_MB": "1",
            "GEN3D_MAX_IMAGE_PIXELS": "250000",
            "GEN3D_MAX_BATCH_ITEMS": "4",
            "MODEL_SERVER_WORKERS": "1",
        }
    )
    srv.wait_ready(60)
    yield srv
    server_stopper.stop(srv)


def post(server, body, content_type="image/png", **headers):
    return requests.post(
        server.url + "/invocations",
        data=body,
        headers={"Content-Type": content_type, **headers},
        timeout=60,
    )


def load_glb(data: bytes) -> trimesh.Trimesh:
    mesh = trimesh.load(io.BytesIO(data), file_type="glb", force="mesh")
    return mesh


def test_ping_and_execution_parameters(server) -> None:
    ping = requests.get(server.url + "/ping", timeout=2)
    assert ping.status_code == 200 and ping.content == b""
    params = requests.get(server.url + "/execution-parameters", timeout=2).json()
    # silhouette runs one sample at a time: one transform in flight per worker
    assert params == {
        "MaxConcurrentTransforms": 1,
        "BatchStrategy": "SINGLE_RECORD",
        "MaxPayloadInMB": 1,
    }


def test_rgba_png_gives_a_watertight_coloured_glb_with_extras(server) -> None:
    response = post(server, rgba_png(128), **{ATTRS: "seed=7,trace=abc"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "model/gltf-binary"
    assert response.headers[ATTRS] == "seed=7,trace=abc"
    mesh = load_glb(response.content)
    assert mesh.is_watertight and mesh.visual.vertex_colors.shape[0] == len(mesh.vertices)
    extras = glb_json(response.content)["asset"]["extras"]
    assert extras["backend"] == "silhouette" and extras["seed"] == 7
    assert extras["batch_size"] == 1 and extras["version"] and extras["request_id"]
    assert extras["request_id"] == response.headers["X-Request-Id"]


def test_x_image_multipart_and_json_forms_agree(server) -> None:
    image, mask = photo_and_mask(96)
    via_png = post(server, rgba_png(96), "application/x-image")
    files = {
        "image": ("p.jpg", png_bytes(image)),
        "mask": ("m.png", png_bytes(mask * np.uint8(255))),
    }
    via_multipart = requests.post(
        server.url + "/invocations", files=files, data={"seed": "0"}, timeout=60
    )
    via_json = post(
        server, json.dumps(json_instance(96)), "application/json", Accept="model/gltf-binary"
    )
    meshes = [load_glb(r.content) for r in (via_png, via_multipart, via_json)]
    assert all(np.allclose(m.vertices, meshes[0].vertices) for m in meshes)


@pytest.mark.parametrize(
    ("accept", "content_type", "check"),
    [
        (
            "application/ply",
            "application/ply",
            lambda d: PlyData.read(io.BytesIO(d))["vertex"].count == 20_000,
        ),
        ("application/octet-stream", "application/octet-stream", lambda d: d[:4] == b"ply\n"),
        (
            "model/obj",
            "model/obj",
            lambda d: len(trimesh.load(io.BytesIO(d), file_type="obj").faces) > 1000,
        ),
        (
            "application/json",
            "application/json",
            lambda d: json.loads(d)["format"] == "glb" and json.loads(d)["metadata"]["backend"],
        ),
    ],
)
def test_accept_picks_the_response(server, accept, content_type, check) -> None:
    response = post(server, rgba_png(64), Accept=accept)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(content_type)
    assert check(response.content)


def test_format_from_custom_attributes(server) -> None:
    response = post(server, rgba_png(64), **{ATTRS: "format=ply"})
    assert response.headers["Content-Type"] == "application/ply"


def test_batch_returns_good_items_and_errors_in_order(server) -> None:
    empty = json_instance(48)
    empty["mask"] = b64(png_bytes(np.zeros((48, 48), np.uint8)))
    body = {
        "instances": [
            json_instance(48, format="ply"),
            empty,
            {"image": "@@"},
            json_instance(48, seed=3),
        ]
    }
    response = post(server, json.dumps(body), "application/json")
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert [p.get("format") or p["error"]["code"] for p in predictions] == [
        "ply",
        "unprocessable",
        "bad_request",
        "glb",
    ]
    assert predictions[1]["error"]["request_id"] == response.headers["X-Request-Id"]


def test_seed_era_batch_and_zip_answer(server) -> None:
    a, b = json_instance(40), json_instance(40, seed=1)
    body = {"images": [a["image"], b["image"]], "masks": [a["mask"], b["mask"]]}
    response = post(server, json.dumps(body), "application/json", Accept="application/zip")
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert sorted(archive.namelist()) == ["0000.glb", "0001.glb", "manifest.json"]
    assert load_glb(archive.read("0001.glb")).is_watertight


def _bomb() -> bytes:
    """Made by the one test that sends it, not at collection (0.4 s in every test process)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (10000, 10000)).save(buffer, "PNG")  # ~100 kB on the wire
    return buffer.getvalue()


ERROR_ROWS = [
    # (status, code, body, content type, extra headers)
    (400, "bad_request", b"{oops", "application/json", {}),
    (400, "bad_request", json.dumps({"image": "***"}).encode(), "application/json", {}),
    (400, "bad_request", b"GIF89a not really", "image/png", {}),
    (406, "not_acceptable", rgba_png(32), "image/png", {"Accept": "text/html"}),
    (413, "payload_too_large", b"x" * (1024 * 1024 + 10), "image/png", {}),
    (413, "payload_too_large", _bomb, "image/png", {}),
    (
        413,
        "payload_too_large",
        json.dumps({"instances": [json_instance(8)] * 5}).encode(),
        "application/json",
        {},
    ),
    (415, "unsupported_media_type", b"hello", "text/plain", {}),
    (
        422,
        "unprocessable",
        png_bytes(photo_and_mask(32)[0], "JPEG"),
        "image/jpeg",
        {ATTRS: "mask=required"},
    ),
    (
        422,
        "unprocessable",
        json.dumps({**json_instance(32), "format": "fbx"}).encode(),
        "application/json",
        {},
    ),
    (
        422,
        "unprocessable",
        json.dumps({**json_instance(32), "options": {"x": 1}}).encode(),
        "application/json",
        {},
    ),
    (422, "unprocessable", png_bytes(np.zeros((20, 20, 4), np.uint8)), "image/png", {}),
    (422, "unprocessable", rgba_png(32), "image/png", {ATTRS: "seed=-4"}),
]


@pytest.mark.parametrize(("status", "code", "body", "content_type", "headers"), ERROR_ROWS)
def test_error_rows(server, status, code, body, content_type, headers) -> None:
    response = post(server, body() if callable(body) else body, content_type, **headers)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert error["request_id"] == response.headers["X-Request-Id"]
    assert "Traceback" not in response.text


def test_mask_size_mismatch_multipart(server) -> None:
    image, _ = photo_and_mask(40)
    files = {
        "image": ("p.png", png_bytes(image)),
        "mask": ("m.png", png_bytes(np.full((30, 30), 255, np.uint8))),
    }
    response = requests.post(server.url + "/invocations", files=files, timeout=30)
    assert response.status_code == 422 and "mask is 30x30" in response.json()["error"]["message"]


def test_unknown_route_and_method_are_json(server) -> None:
    assert requests.get(server.url + "/nope", timeout=5).json()["error"]["code"] == "not_found"
    wrong = requests.get(server.url + "/invocations", timeout=5)
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.slow  # 32 requests through the real server
def test_32_concurrent_requests_all_answered_without_a_worker_restart(server) -> None:
    bodies = [rgba_png(96, seed=i) for i in range(32)]
    with ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(lambda b: post(server, b).status_code, bodies))
    assert statuses == [200] * 32
    assert requests.get(server.url + "/ping", timeout=2).status_code == 200
    log = server.log_path.read_text()  # all of it: one line per request fills the tail
    assert log.count("Booting worker") == 1
    assert "Worker exiting" not in log and "WORKER TIMEOUT" not in log


def test_not_ready_is_503_then_200(start_gen3d_server, tmp_path) -> None:
    """While the model loads, the front and gunicorn are up and answer 503 not_ready, to
    /ping and /invocations alike; once it is loaded, 200. The test holds the load (a
    backend that waits for a file), so the 503 phase lasts exactly as long as it needs."""
    gate = tmp_path / "gate"
    srv = start_gen3d_server(
        {
            "GEN3D_BACKEND": "gen3d_slow_backend:GatedLoadingCubeBackend",
            "PYTHONPATH": str(REPO / "tests" / "fixtures" / "plugins"),
            "GEN3D_TEST_GATE": str(gate),
        },
        wait=False,
    )
    deadline = time.monotonic() + 60
    ping = None
    while ping is None:
        assert time.monotonic() < deadline, srv.log()
        try:  # refused until nginx listens, then held until a worker has booted
            ping = requests.get(srv.url + "/ping", timeout=2)
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.02)
    assert ping.status_code == 503 and ping.json()["error"]["code"] == "not_ready"
    early = post(srv, rgba_png(32))
    assert early.status_code == 503 and early.json()["error"]["code"] == "not_ready"
    assert int(early.headers["Retry-After"]) >= 1
    gate.touch()
    while requests.get(srv.url + "/ping", timeout=2).status_code != 200:
        assert time.monotonic() < deadline, srv.log()
        time.sleep(0.02)
    assert post(srv, rgba_png(32)).status_code == 200
    assert "loaded backend" in srv.log(100_000)


def test_a_model_that_cannot_load_keeps_ping_503_with_the_reason_logged(
    start_gen3d_server, tmp_path
) -> None:
    srv = start_gen3d_server(
        {"GEN3D_BACKEND": "proxy", "GEN3D_MODEL_DIR": str(tmp_path / "x")}, wait=False
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "model failed to load" not in srv.log():
        time.sleep(0.1)
    response = requests.get(srv.url + "/ping", timeout=2)
    assert response.status_code == 503 and "model is" not in response.json()["error"]["message"]
    assert "model failed to load" in srv.log()


@pytest.mark.slow  # a server of its own, started the way the container starts it
def test_container_entrypoint_serves_on_the_bind_port() -> None:
    port = free_port()
    env = {**os.environ, "SAGEMAKER_BIND_TO_PORT": str(port)}
    process = subprocess.Popen(
        [str(REPO / "container" / "serve"), "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        started = time.monotonic()
        while time.monotonic() - started < 60:  # start-up time is not what this tests
            try:
                if requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # still starting
                time.sleep(0.05)
        else:
            pytest.fail("no /ping 200 within 60 s")
        response = requests.post(
            f"http://127.0.0.1:{port}/invocations",
            data=rgba_png(64),
            headers={"Content-Type": "image/png"},
            timeout=30,
        )
        assert response.headers["Content-Type"] == "model/gltf-binary"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


@pytest.mark.heavy
def test_sigterm_lets_the_request_in_flight_finish(start_gen3d_server) -> None:
    srv = start_gen3d_server()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (1000, 1000, 3), dtype=np.uint8)
    mask = np.zeros((1000, 1000), bool)
    mask[50:950, 50:950] = True
    body = json.dumps(
        {
            "image": b64(png_bytes(image)),
            "mask": b64(png_bytes(mask * np.uint8(255))),
            "options": {"resolution": 512, "splat_points": 200_000},
        }
    )
    result: dict[str, object] = {}

    def call() -> None:
        started = time.monotonic()
        response = post(srv, body, "application/json")
        result.update(
            status=response.status_code, took=time.monotonic() - started, glb=response.content[:4]
        )

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.3)  # the request is now being decoded or computed
    assert "status" not in result, "the request finished too fast to test shutdown"
    srv.process.send_signal(signal.SIGTERM)
    thread.join(60)
    assert result["status"] == 200 and result["glb"] == b"glTF"
    assert srv.process.wait(30) == 0


def test_behind_the_front_requests_go_to_the_worker_with_the_fewest_in_flight(
    start_gen3d_server,
) -> None:
    """nginx balances over the workers' own sockets (least_conn): 8 requests at once on 2
    workers are split between them, so none waits in a worker's queue behind more than
    its share (all 8 on one worker: the last waited behind 7)."""
    srv = start_gen3d_server({"MODEL_SERVER_WORKERS": "2", "GEN3D_FRONT": "nginx"})
    body = rgba_png(96)

    def one(i: int) -> requests.Response:
        return post(srv, body, **{ATTRS: f"seed={i},resolution=192"})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(8)))
    assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
    served_by = [
        json.loads(line)["process"]
        for line in srv.log(1_000_000).splitlines()
        if '"route": "/invocations"' in line
    ]
    assert len(set(served_by)) == 2, served_by
    # about half each (the fixture's own requests are in the log too)
    assert max(served_by.count(pid) for pid in set(served_by)) <= 0.7 * len(served_by)


def test_a_request_that_waited_past_its_deadline_for_a_worker_is_504_unread(
    start_gen3d_server,
) -> None:
    """nginx stamps the request with its clock; the worker counts the wait since against
    the deadline. The only worker is stopped (SIGSTOP) while a request waits in the
    backlog for 1.5 s against a 1 s deadline: once it runs again, the request is answered
    504 at admission, not computed (without the stamp its deadline began at the worker)."""
    srv = start_gen3d_server(
        {"MODEL_SERVER_WORKERS": "1", "GEN3D_FRONT": "nginx", "GEN3D_REQUEST_TIMEOUT_S": "1"}
    )
    assert post(srv, rgba_png(64)).status_code == 200  # the deadline is enough once taken
    (worker,) = gunicorn_workers(srv)
    os.kill(worker, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(post, srv, rgba_png(64))
            time.sleep(1.5)
            os.kill(worker, signal.SIGCONT)
            late = pending.result(timeout=30)
    finally:
        os.kill(worker, signal.SIGCONT)
    assert late.status_code == 504, late.text
    assert late.json()["error"]["code"] == "deadline_exceeded"
    assert "waited for a worker" in late.json()["error"]["message"]
