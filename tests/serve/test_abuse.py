"""Client mistakes and hostile inputs against a real server on 127.0.0.1: every one is a
4xx JSON error, nothing leaks (no traceback, no path, no exception text), the worker
keeps serving (no restart), and a connection whose body was not read is closed."""

from __future__ import annotations

import http.client
import io
import json
import socket
import time

import numpy as np
import pytest
import requests
from gen3d_testing import json_instance, png_bytes, rgba_png
from PIL import Image

from gen3d.serve.backends.synthetic import photo_and_mask
from gen3d.serve.local_server import gunicorn_workers
from gen3d.serve.process.front import nginx_binary


@pytest.fixture(scope="module")
def server(tmp_path_factory, server_stopper):
    from gen3d.serve.local_server import start_server

    log = tmp_path_factory.mktemp("abuse") / "server.log"
    srv = start_server({"GEN3D_WARMUP": "0", "GEN3D_MAX_BODY_MB": "2"}, log_path=log)
    srv.wait_ready(60)
    yield srv
    server_stopper.stop(srv)


def assert_client_error(response: requests.Response, status: int | tuple[int, ...]) -> dict:
    allowed = (status,) if isinstance(status, int) else status
    assert response.status_code in allowed, (response.status_code, response.text[:300])
    body = response.json()
    assert set(body["error"]) == {"code", "message", "request_id"}
    for leak in ("Traceback", "/work/", "/opt/", "site-packages", "Exceeds the limit"):
        assert leak not in response.text
    return body["error"]


def post(server, data: bytes, content_type: str, **headers: str) -> requests.Response:
    return requests.post(
        server.url + "/invocations",
        data=data,
        headers={"Content-Type": content_type, **headers},
        timeout=30,
    )


def jpeg_with_orientation(image: np.ndarray, orientation: int) -> bytes:
    """`image` stored rotated so that applying EXIF `orientation` displays it upright."""
    stored = Image.fromarray(image)
    if orientation == 6:  # displayed = stored rotated 90° clockwise
        stored = stored.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=95, exif=exif)
    return buffer.getvalue()


def test_a_huge_seed_is_a_4xx_everywhere_and_spares_batch_mates(server) -> None:
    seed = "9" * 5000
    body = json.dumps(json_instance(48))[:-1] + f', "seed": {seed}}}'
    assert_client_error(post(server, body.encode(), "application/json"), (400, 422))
    custom = post(
        server, rgba_png(48), "image/png", **{"X-Amzn-SageMaker-Custom-Attributes": f"seed={seed}"}
    )
    assert_client_error(custom, 422)
    batch = '{"instances": [' + json.dumps(json_instance(48))
    batch += ", " + json.dumps(json_instance(48))[:-1] + f', "seed": "{seed}"}}]}}'
    response = post(server, batch.encode(), "application/json")
    assert response.status_code == 200, response.text[:300]
    good, bad = response.json()["predictions"]
    assert "data" in good and bad["error"]["code"] == "unprocessable"


def test_deeply_nested_json_is_a_400(server) -> None:
    body = "[" * 100_000 + "]" * 100_000
    assert_client_error(post(server, body.encode(), "application/json"), 400)
    nested = '{"image": ' + "[" * 50_000 + "]" * 50_000 + "}"
    assert_client_error(post(server, nested.encode(), "application/json"), 400)


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "ICO", "PPM", "TGA", "PCX", "SGI"])
def test_formats_the_content_type_does_not_allow_are_refused(server, fmt: str) -> None:
    image, _ = photo_and_mask(48)
    data = png_bytes(image, fmt)
    error = assert_client_error(post(server, data, "image/png"), 400)
    assert "PNG" in error["message"]
    instance = {"image": json_instance(48)["image"], "mask": json_instance(48)["mask"]}
    import base64

    instance["image"] = base64.b64encode(data).decode()
    assert_client_error(post(server, json.dumps(instance).encode(), "application/json"), 400)


@pytest.mark.parametrize(
    "payload",
    [
        b"DDS " + b"\x7c\x00\x00\x00" + b"\x00" * 120,  # DDS header, nonsense sizes
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",  # would reach Ghostscript
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,  # a PNG signature and garbage
        b"\xff\xd8\xff\xe0" + b"\x00" * 40,  # a JPEG signature and garbage
    ],
)
def test_malformed_images_are_a_400(server, payload: bytes) -> None:
    for content_type in ("image/png", "application/x-image", "image/jpeg"):
        assert_client_error(post(server, payload, content_type), (400, 422))


def test_a_jpeg_with_exif_orientation_matches_a_mask_drawn_on_the_displayed_photo(server) -> None:
    image, mask = photo_and_mask(64, width=96)  # displayed: 96 wide, 64 high
    photo = jpeg_with_orientation(image, 6)  # stored 64 wide, 96 high
    assert Image.open(io.BytesIO(photo)).size == (64, 96)
    response = requests.post(
        server.url + "/invocations",
        files={
            "image": ("p.jpg", photo, "image/jpeg"),
            "mask": ("m.png", png_bytes(mask.astype(np.uint8) * 255), "image/png"),
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text[:300]


def test_a_chunked_body_over_the_limit_is_a_413(server) -> None:
    def chunks():
        for _ in range(40):
            yield b"\0" * 100_000  # 4 MB in all; the limit is 2 MB

    response = requests.post(
        server.url + "/invocations",
        data=chunks(),
        headers={"Content-Type": "image/png"},
        timeout=30,
    )
    assert_client_error(response, 413)


def test_a_malformed_chunked_body_is_a_4xx(server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nzz\r\nnot a chunk\r\n0\r\n\r\n"
        )
        head = sock.recv(4096).decode(errors="replace")
    assert head.startswith("HTTP/1.1 4"), head[:200]


def test_an_early_error_never_poisons_the_kept_alive_connection(server) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    body = b"x" * 500_000
    connection.request("POST", "/invocations", body=body, headers={"Content-Type": "text/plain"})
    first = connection.getresponse()
    first.read()
    assert first.status == 415
    if first.getheader("Connection", "").lower() != "close":
        # kept alive: the unread body must not be taken for the next request
        connection.request("GET", "/ping")
        second = connection.getresponse()
        assert second.status == 200
        second.read()
    connection.close()


# --------------------------------------------- every client number and JSON document: 4xx

SUPERSCRIPT_TWO = "\u00b2"  # "²".isdigit() is True, int("²") raises ValueError


def multipart(fields: dict[str, str], image: bytes | None = None) -> tuple[bytes, str]:
    """A multipart body with these text fields and an 'image' file part."""
    boundary = "gen3dboundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    head = "".join(parts).encode()
    photo = image if image is not None else rgba_png(48)
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    body = head + photo + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize("key", ["target_faces", "texture_size"])
def test_a_non_ascii_digit_is_a_400_in_json_multipart_and_custom_attributes(server, key) -> None:
    instance = json_instance(48, options={key: SUPERSCRIPT_TWO})
    error = assert_client_error(
        post(server, json.dumps(instance).encode(), "application/json"), 400
    )
    assert key in error["message"]
    body, content_type = multipart({"options": json.dumps({key: SUPERSCRIPT_TWO})})
    assert_client_error(post(server, body, content_type), 400)
    attributes = {"X-Amzn-SageMaker-Custom-Attributes": f"{key}={SUPERSCRIPT_TWO}"}
    # a header carries Latin-1: "²" is one byte there, and the server reads it back as "²"
    assert_client_error(post(server, rgba_png(48), "image/png", **attributes), 400)
    body, content_type = multipart({"seed": SUPERSCRIPT_TWO})
    assert_client_error(post(server, body, content_type), 422)


@pytest.mark.parametrize(
    "options",
    [
        '{"target_faces": ' + "9" * 5000 + "}",  # int() refuses over 4300 digits
        "[" * 100_000 + "]" * 100_000,  # RecursionError in the parser
        '{"target_faces": ' + "[" * 40 + "]" * 40 + "}",  # over our depth limit
        '{"target_faces": 1e999}',
        "{" + "x" * (70 * 1024) + "}",  # over the options field's size limit
    ],
    ids=["5000-digit integer", "nested 100000 deep", "nested 40 deep", "1e999", "70 KB"],
)
def test_a_hostile_multipart_options_field_is_a_4xx(server, options: str) -> None:
    body, content_type = multipart({"options": options})
    assert_client_error(post(server, body, content_type), (400, 413))


def test_a_multipart_body_of_many_tiny_parts_is_refused_unparsed(server) -> None:
    """55 000 empty parts in 4.4 MB cost 2 s of CPU to parse; a request has five parts."""
    body, content_type = multipart({f"f{i}": "" for i in range(15_000)})
    assert len(body) < 2 * 1024 * 1024  # within the body limit: only the part cap refuses it
    error = assert_client_error(post(server, body, content_type), 413)
    assert "parts" in error["message"]
    body, content_type = multipart({"note": "x" * (300 * 1024)})  # one big text field
    assert_client_error(post(server, body, content_type), 413)


def raw_exchange(server, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send bytes as they are (requests would refuse to); (status line, headers, body)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, body


@pytest.mark.skipif(nginx_binary() is None, reason="needs nginx (make front)")
@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # was nginx's HTML 500
        (b"GET /a/../../b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"NONSENSE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20_000 + b"\r\n\r\n", 400),  # 494
        (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET /_gen3d_error/400 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404),
    ],
    ids=["bad escape", "above root", "no request line", "header too large", "URI too long",
         "unknown transfer coding", "HTTP/2.0", "error page itself"],
)  # fmt: skip
def test_every_status_the_front_makes_is_our_json_error(server, request_bytes, status) -> None:
    line, headers, body = raw_exchange(server, request_bytes)
    assert line.split(" ", 2)[1] == str(status), (line, body[:200])
    assert headers["content-type"] == "application/json", body[:200]
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message", "request_id"} and error["request_id"]


def test_the_server_survived_every_attack_without_a_worker_restart(server) -> None:
    before = gunicorn_workers(server)
    assert post(server, b"\x00" * 10, "image/webp").status_code == 400
    assert requests.get(server.url + "/ping", timeout=5).status_code == 200
    assert gunicorn_workers(server) == before
    assert "Traceback" not in server.log(200_000)


def test_a_permanent_load_failure_hides_the_path_and_promises_no_retry(
    start_gen3d_server, tmp_path
) -> None:
    srv = start_gen3d_server(
        {"GEN3D_BACKEND": "proxy", "GEN3D_MODEL_DIR": str(tmp_path / "missing")}, wait=False
    )
    deadline = time.monotonic() + 60
    while "model failed to load" not in srv.log():
        assert time.monotonic() < deadline, srv.log()
        time.sleep(0.1)
    for response in (
        requests.get(srv.url + "/ping", timeout=5),
        post(srv, rgba_png(48), "image/png"),
    ):
        error = assert_client_error(response, 503)
        assert str(tmp_path) not in response.text and "Retry-After" not in response.headers
        assert "failed to load" in error["message"] and "log" in error["message"]
    assert str(tmp_path) in srv.log()  # the operator still sees the reason
