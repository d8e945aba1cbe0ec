"""Mutated image bytes of every supported format, through a real server: never a 5xx.

Seeded and bounded: 3 formats x MUTATIONS bodies, each a valid image with bytes flipped,
runs overwritten, the tail cut or garbage spliced in (what a broken client or an attacker
sends). Every answer is 200 or a 4xx JSON error, and the worker is never restarted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import requests
from gen3d_testing import png_bytes

from gen3d.serve.backends.synthetic import photo_and_mask

MUTATIONS = 40
PLUGINS = Path(__file__).resolve().parents[1] / "fixtures" / "plugins"
FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


@pytest.fixture(scope="module")
def server(tmp_path_factory, server_stopper):
    from gen3d.serve.local_server import start_server

    log = tmp_path_factory.mktemp("fuzz") / "server.log"
    # JPEG carries no alpha: a backend that needs no mask (the documented example) lets
    # photo-only bodies reach the decoder, which is what is fuzzed here.
    srv = start_server(
        {
            "GEN3D_BACKEND": "gen3d_example_backend:CubeBackend",
            "PYTHONPATH": str(PLUGINS),
            "GEN3D_WARMUP": "0",
        },
        log_path=log,
    )
    srv.wait_ready(60)
    yield srv
    server_stopper.stop(srv)


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    buf = bytearray(data)
    kind = int(rng.integers(0, 4))
    if kind == 0:  # flip bytes anywhere (headers included)
        for pos in rng.integers(0, len(buf), size=int(rng.integers(1, 16))):
            buf[pos] ^= int(rng.integers(1, 256))
    elif kind == 1:  # overwrite a run
        start = int(rng.integers(0, len(buf)))
        run = rng.integers(0, 256, size=min(int(rng.integers(1, 64)), len(buf) - start))
        buf[start : start + len(run)] = bytes(run.astype(np.uint8))
    elif kind == 2:  # truncate
        del buf[int(rng.integers(1, len(buf))) :]
    else:  # splice garbage in
        pos = int(rng.integers(0, len(buf)))
        buf[pos:pos] = bytes(rng.integers(0, 256, size=int(rng.integers(1, 256))).astype(np.uint8))
    return bytes(buf)


@pytest.mark.slow  # hundreds of mutated images through a real server
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_mutated_images_never_get_a_5xx(server, fmt: str) -> None:
    image, mask = photo_and_mask(64)
    rgba = np.dstack([image, mask.astype(np.uint8) * 255])
    valid = png_bytes(rgba if fmt != "JPEG" else image, fmt)
    rng = np.random.default_rng(sorted(FORMATS).index(fmt))
    statuses = []
    for _ in range(MUTATIONS):
        response = requests.post(
            server.url + "/invocations",
            data=mutate(valid, rng),
            headers={"Content-Type": FORMATS[fmt]},
            timeout=30,
        )
        statuses.append(response.status_code)
        assert response.status_code < 500, (response.status_code, response.text[:300])
        if response.status_code != 200:
            assert response.json()["error"]["code"]
    assert requests.get(server.url + "/ping", timeout=5).status_code == 200
    assert any(s >= 400 for s in statuses)  # the mutations really broke some images
    assert "Traceback" not in server.log(500_000)
