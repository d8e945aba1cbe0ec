"""Client.local against a real gunicorn server on 127.0.0.1: every input type, every
format, batch splitting, the typed error of every row of the error table, and the bounded
retry on 503 + Retry-After."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import plyfile
import pytest
import requests
import trimesh
from gen3d_testing import glb_json, photo_and_mask, png_bytes, rgba_png
from PIL import Image

from gen3d.aws.storage import CLI_INPUT_PREFIX
from gen3d.client import (
    BadRequestError,
    BatchError,
    CapacityError,
    Client,
    InputError,
    InternalServerError,
    NotAcceptableError,
    PayloadTooLargeError,
    QueueFullError,
    Result,
    ServerDeadlineError,
    ServerNotReadyError,
    TransportError,
    UnprocessableError,
    UnsupportedMediaTypeError,
)
from gen3d.client import errors as client_errors
from gen3d.client.async_endpoint import INPUT_PREFIX
from gen3d.client.inputs import FORMAT_MEDIA_TYPE
from gen3d.serve import errors as server_errors
from gen3d.serve.http import codecs
from gen3d.serve.settings import Settings

PLUGINS = Path(__file__).resolve().parents[1] / "fixtures" / "plugins"


def quiet(**options):
    lines: list[str] = []
    return lines, {"progress": lines.append, **options}


def test_every_input_type_gives_the_same_mesh(default_server, tmp_path) -> None:
    srv = default_server
    client = Client.local(srv.url, progress=None)
    image, mask = photo_and_mask(96)
    (tmp_path / "photo.png").write_bytes(png_bytes(image))
    (tmp_path / "mask.png").write_bytes(png_bytes(mask.astype(np.uint8) * 255))
    rgba = np.dstack([image, mask.astype(np.uint8) * 255])
    inputs = {
        "paths": (tmp_path / "photo.png", tmp_path / "mask.png"),
        "str paths": (str(tmp_path / "photo.png"), str(tmp_path / "mask.png")),
        "bytes": (png_bytes(image), png_bytes(mask.astype(np.uint8) * 255)),
        "PIL": (Image.fromarray(image), Image.fromarray(mask.astype(np.uint8) * 255)),
        "numpy uint8 + bool mask": (image, mask),
        "numpy float in [0, 1]": (image / 255.0, mask.astype(np.float32)),
        "RGBA numpy, no mask": (rgba, None),
        "RGBA PIL, no mask": (Image.fromarray(rgba), None),
    }
    meshes = {name: client.generate(img, m).to_trimesh() for name, (img, m) in inputs.items()}
    reference = meshes["paths"]
    assert reference.is_watertight and len(reference.faces) > 100
    for name, mesh in meshes.items():
        assert np.array_equal(mesh.vertices, reference.vertices), name
        assert np.array_equal(mesh.faces, reference.faces), name


def test_bad_inputs_are_refused_before_sending(tmp_path) -> None:
    client = Client.local("http://127.0.0.1:9", progress=None)  # nothing listens there
    with pytest.raises(InputError, match="no such file"):
        client.generate(tmp_path / "absent.png")
    with pytest.raises(InputError, match="must be a path, bytes"):
        client.generate(12345)
    with pytest.raises(InputError, match=r"values in \[0, 1\]"):
        client.generate(np.full((8, 8, 3), 300.0))
    with pytest.raises(InputError, match="format must be one of"):
        client.generate(rgba_png(16), format="stl")
    with pytest.raises(InputError, match="seed must be"):
        client.generate(rgba_png(16), seed=-1)
    with pytest.raises(TransportError, match="could not reach"):
        client.generate(rgba_png(16))


def test_every_format_saves_and_loads(default_server, tmp_path) -> None:
    srv = default_server
    client = Client.local(srv.url, progress=None)
    photo = rgba_png(80)

    glb = client.generate(photo, format="glb", seed=7)
    assert glb.format == "glb" and glb.metadata["seed"] == 7
    assert glb.metadata["backend"] == "silhouette" and len(glb.request_id) >= 16
    assert glb_json(glb.data)["asset"]["extras"]["faces"] == glb.metadata["faces"]
    saved = glb.save(tmp_path / "out" / "a.glb")
    assert saved.read_bytes() == glb.data
    assert glb.save(tmp_path).name == "result.glb"
    mesh = trimesh.load(saved, force="mesh")
    assert mesh.is_watertight and len(mesh.faces) == glb.metadata["faces"]

    ply = client.generate(photo, format="ply")
    cloud = ply.to_trimesh()
    vertex = plyfile.PlyData.read(ply.save(tmp_path / "a.ply"))["vertex"]
    assert isinstance(cloud, trimesh.PointCloud) and len(cloud.vertices) == vertex.count
    assert np.allclose(cloud.vertices[:, 0], vertex["x"]) and "f_dc_0" in vertex.data.dtype.names
    assert cloud.colors.shape == (vertex.count, 4) and len(np.unique(cloud.colors[:, 0])) > 10

    obj = client.generate(photo, format="obj")
    obj_mesh = obj.to_trimesh()
    assert obj.data.startswith(b"#") or b"\nv " in obj.data
    assert isinstance(obj_mesh, trimesh.Trimesh) and len(obj_mesh.faces) == obj.metadata["faces"]


def test_client_tables_match_the_server() -> None:
    """The client mirrors the container's contract; these keep the two equal."""
    assert FORMAT_MEDIA_TYPE == codecs.FORMAT_MEDIA_TYPE
    assert INPUT_PREFIX == CLI_INPUT_PREFIX  # the prefix IAM and lifecycle rules expect
    defaults = Settings()
    from gen3d.client.transport import DEFAULT_MAX_BATCH_ITEMS, DEFAULT_MAX_BODY_MB

    assert (DEFAULT_MAX_BATCH_ITEMS, DEFAULT_MAX_BODY_MB) == (
        defaults.max_batch_items,
        defaults.max_body_mb,
    )
    # every error the server can send maps to the class of the same code and status
    for cls in server_errors.Gen3DError.__subclasses__():
        body = cls("why").to_dict("req-1")
        err = client_errors.from_error_body(body, status=cls.status)
        assert (err.code, err.status, err.request_id) == (cls.code, cls.status, "req-1"), cls
        assert type(err) is not client_errors.ServerError, f"no client class for {cls.code}"


def test_typed_errors_for_each_row_of_the_table(start_gen3d_server) -> None:
    srv = start_gen3d_server({"GEN3D_MAX_IMAGE_PIXELS": str(100 * 100)})
    client = Client.local(srv.url, progress=None)
    rgba = rgba_png(64)
    image, mask = photo_and_mask(64)
    cases = [
        (BadRequestError, 400, lambda: client.generate(b"not an image")),
        (NotAcceptableError, 406, lambda: client.invoke(rgba, "image/png", "text/html")),
        (PayloadTooLargeError, 413, lambda: client.generate(rgba_png(120))),
        (UnsupportedMediaTypeError, 415, lambda: client.invoke(rgba, "text/plain")),
        # one colour: the server's automatic mask finds no object in it
        (UnprocessableError, 422, lambda: client.generate(np.full((64, 64, 3), 128, np.uint8))),
        (UnprocessableError, 422, lambda: client.generate(image, np.zeros_like(mask))),
    ]
    for cls, status, call in cases:
        with pytest.raises(cls) as caught:
            call()
        err = caught.value
        assert err.http_status == status and err.code == cls.code
        assert err.request_id and err.request_id in str(err)


def test_capacity_and_internal_errors_come_back_typed_and_are_not_retried(
    start_gen3d_server,
) -> None:
    """The 503 capacity and 500 rows, produced for real by a backend that fails on
    request (tests/fixtures/plugins/gen3d_faulty_backend.py)."""
    srv = start_gen3d_server(
        {
            "GEN3D_BACKEND": "gen3d_faulty_backend:FaultyBackend",
            "PYTHONPATH": str(PLUGINS),
        }
    )
    lines, options = quiet(max_retries=3)
    client = Client.local(srv.url, **options)
    assert client.generate(rgba_png(32)).metadata["backend"] == "faulty"
    with pytest.raises(CapacityError) as oom:
        client.generate(rgba_png(32), fail="oom")
    assert oom.value.http_status == 503 and oom.value.code == "capacity"
    with pytest.raises(InternalServerError) as bug:
        client.generate(rgba_png(32), fail="bug")
    assert bug.value.http_status == 500 and "broadcast" not in bug.value.message
    assert lines == []  # neither is safe to send again: no retry


def test_a_deadline_on_the_server_is_a_typed_504_in_its_slot(start_gen3d_server) -> None:
    """Four samples queued at once on a batch-of-one backend whose sample takes 2 s, with
    a 1 s deadline: the first runs, the ones still queued when their deadline passes are
    never run. (A deadline shorter than the trip to a worker fails the whole request at
    admission: tests/serve/test_app.py.)"""
    srv = start_gen3d_server(
        {
            "GEN3D_BACKEND": "gen3d_slow_backend:SlowCubeBackend",
            "PYTHONPATH": str(PLUGINS),
            "GEN3D_MAX_BATCH_SIZE": "1",
            "GEN3D_REQUEST_TIMEOUT_S": "1",
            "GEN3D_WARMUP": "0",
        }
    )
    client = Client.local(srv.url, progress=None)
    results = client.generate_many([rgba_png(200)] * 4, return_errors=True)
    late = [r for r in results if isinstance(r, ServerDeadlineError)]
    assert len(late) >= 3 and all(r.code == "deadline_exceeded" for r in late), results
    assert not late[0].retryable


def answers(url: str) -> bool:
    """The server answers (whatever it answers); not yet when it refuses the connection
    or, busy starting on a loaded machine, does not answer within 2 s."""
    try:
        requests.get(url, timeout=2)
    except (requests.ConnectionError, requests.Timeout):
        return False
    return True


@pytest.mark.heavy
def test_not_ready_is_retried_after_retry_after_and_bounded(start_gen3d_server) -> None:
    """A model still loading: /invocations answers 503 not_ready with Retry-After: 5."""
    srv = start_gen3d_server(
        {
            "GEN3D_BACKEND": "gen3d_slow_backend:SlowLoadingCubeBackend",
            "PYTHONPATH": str(PLUGINS),
        },
        wait=False,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not answers(srv.url + "/ping"):  # 503 while loading
        time.sleep(0.1)
    lines, options = quiet(max_retries=1, max_retry_wait_s=10)
    started = time.monotonic()
    with pytest.raises(ServerNotReadyError) as caught:
        Client.local(srv.url, **options).generate(rgba_png(32))
    assert caught.value.retry_after_s == 5 and time.monotonic() - started >= 5
    assert len(lines) == 1 and "not_ready" in lines[0] and "retry 1 of 1 in 5 s" in lines[0]

    # a Retry-After above the cap is not waited for at all
    lines, options = quiet(max_retries=3, max_retry_wait_s=1)
    started = time.monotonic()
    with pytest.raises(ServerNotReadyError):
        Client.local(srv.url, **options).generate(rgba_png(32))
    assert time.monotonic() - started < 4 and lines == []


def test_a_model_that_failed_to_load_is_not_retried(start_gen3d_server, tmp_path) -> None:
    """No Retry-After: waiting cannot help, so the client gives up at once."""
    srv = start_gen3d_server(
        {"GEN3D_BACKEND": "proxy", "GEN3D_MODEL_DIR": str(tmp_path / "none")}, wait=False
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "model failed to load" not in srv.log():
        time.sleep(0.1)
    lines, options = quiet(max_retries=3, max_retry_wait_s=10)
    started = time.monotonic()
    with pytest.raises(ServerNotReadyError) as caught:
        Client.local(srv.url, **options).generate(rgba_png(32))
    assert caught.value.retry_after_s is None and lines == []
    assert time.monotonic() - started < 4


def test_queue_full_is_retried_until_served(start_gen3d_server) -> None:
    srv = start_gen3d_server(
        {
            "GEN3D_MAX_QUEUE": "1",
            "GEN3D_MAX_BATCH_SIZE": "1",
            "GEN3D_MAX_WAITING": "0",  # refused at once, so the client's retry is exercised
            "MODEL_SERVER_WORKERS": "1",
        }
    )
    lines: list[str] = []
    client = Client.local(srv.url, max_retries=20, max_retry_wait_s=30, progress=lines.append)
    # three at once on a queue of one: two are refused and come back after Retry-After
    # (each round of refusals costs the clients a second, so more clients only add rounds)
    photo = rgba_png(384)  # long enough to compute that the others arrive meanwhile
    barrier = threading.Barrier(3)
    results: list[object] = []

    def one() -> None:
        barrier.wait()
        try:
            results.append(client.generate(photo))
        except Exception as exc:  # collected and asserted on below
            results.append(exc)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == 3 and all(isinstance(r, Result) for r in results), results
    assert any("queue_full" in line for line in lines), "no request was ever refused"

    # a request that can never fit (2 samples, queue of 1) stops after max_retries
    lines2, options = quiet(max_retries=2)
    with pytest.raises(QueueFullError) as caught:
        Client.local(srv.url, max_batch_items=2, **options).generate_many([photo, photo])
    assert caught.value.http_status == 503 and caught.value.retry_after_s >= 1
    assert len(lines2) == 2


def test_batches_split_to_the_item_and_body_limits(start_gen3d_server) -> None:
    srv = start_gen3d_server({"GEN3D_MAX_BATCH_ITEMS": "3", "GEN3D_MAX_BODY_MB": "1"})
    photos = [rgba_png(48 + 4 * i, seed=i) for i in range(5)]
    lines, options = quiet()

    told = Client.local(srv.url, max_batch_items=3, **options).generate_many(photos, seed=3)
    assert [r.metadata["seed"] for r in told] == [3] * 5
    assert len({r.request_id for r in told}) == 2 and lines == []  # 3 + 2, no refusal
    # each slot holds its own photo's result (the photos differ in size)
    solo = Client.local(srv.url, progress=None)
    for photo, result in zip(photos, told, strict=True):
        expected = solo.generate(photo, seed=3).to_trimesh().vertices
        assert np.array_equal(result.to_trimesh().vertices, expected)

    # not told the limit: the server's 413 splits the batch in halves until it fits
    untold = Client.local(srv.url, **options).generate_many(photos, seed=3)
    for a, b in zip(untold, told, strict=True):
        assert np.array_equal(a.to_trimesh().vertices, b.to_trimesh().vertices)
    assert any("refused as too large" in line for line in lines)

    # the body limit (1 MB, from /execution-parameters) splits big photos by size
    rng = np.random.default_rng(0)
    noisy = [png_bytes(rng.integers(0, 256, (330, 330, 3), dtype=np.uint8)) for _ in range(3)]
    assert sum(len(p) for p in noisy) * 4 / 3 > 1024 * 1024  # three in one body: too large
    mask = png_bytes(photo_and_mask(330)[1].astype(np.uint8) * 255)
    lines.clear()
    big = Client.local(srv.url, max_batch_items=3, **options)
    assert big.transport.limits().max_body_bytes == 1024 * 1024
    out = big.generate_many([(photo, mask) for photo in noisy])
    assert len(out) == 3 and lines == []  # split by size up front: never refused
    assert len({r.request_id for r in out}) == 2


def test_a_failed_item_keeps_its_slot(default_server) -> None:
    srv = default_server
    client = Client.local(srv.url, progress=None)
    image, mask = photo_and_mask(64)
    items = [rgba_png(64), {"image": image, "mask": np.zeros_like(mask)}, (image, mask)]
    with pytest.raises(BatchError, match=r"1 of 3 items failed: \[1\] HTTP 422") as caught:
        client.generate_many(items)
    results = client.generate_many(items, return_errors=True)
    assert isinstance(results[0], Result) and isinstance(results[2], Result)
    assert isinstance(results[1], UnprocessableError) and "empty" in results[1].message
    assert [type(r) for r in caught.value.results] == [type(r) for r in results]


def test_a_redirect_is_not_followed_so_the_photo_stays_where_it_was_sent() -> None:
    """A 307 keeps the body: followed, it re-sent the photo to whatever origin it named."""
    import http.server

    received: list[str] = []

    class Catcher(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            received.append(self.path)
            self.send_response(200)
            self.end_headers()

        do_POST = do_GET

        def log_message(self, *args) -> None:
            pass

    catcher = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Catcher)
    elsewhere = f"http://127.0.0.1:{catcher.server_port}"

    class Redirector(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(307)
            self.send_header("Location", elsewhere + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_GET

        def log_message(self, *args) -> None:
            pass

    redirector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirector)
    for server in (catcher, redirector):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = Client.local(f"http://127.0.0.1:{redirector.server_port}", progress=None)
        with pytest.raises(client_errors.ServerError, match="not followed") as caught:
            client.generate(rgba_png(32))
        assert caught.value.http_status == 307 and caught.value.code == "redirect"
        assert received == []  # neither the photo nor any other request went there
    finally:
        for server in (catcher, redirector):
            server.shutdown()
            server.server_close()


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "localhost:8080", "ftp://127.0.0.1:8080"])
def test_a_url_without_http_is_refused_with_what_to_add(url: str) -> None:
    with pytest.raises(client_errors.InputError, match=r"add http:// \(e\.g\. http://127"):
        Client.local(url)
