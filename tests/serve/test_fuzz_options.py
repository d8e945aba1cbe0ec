"""Fuzzed numbers and JSON in every place a client writes them, through a real server:
never a 5xx (a 5xx is what the blue/green rollback alarm counts).

Seeded and bounded: ROUNDS requests per request form, each carrying option values and a
seed drawn from what breaks naive parsers (digits int() refuses, 5 000-digit integers,
floats, deep nesting, wrong types, mangled JSON text) in the `options` object of a JSON
body, the `options` and `seed` fields of a multipart body, and the custom-attributes
header. Every answer is 200 or a 4xx JSON error, and the worker is never restarted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from gen3d_testing import b64, rgba_png

from gen3d.serve.local_server import gunicorn_workers
from gen3d.serve.request_options import COMMON

ROUNDS = 60
PLUGINS = Path(__file__).resolve().parents[1] / "fixtures" / "plugins"
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
# Digits of other scripts: str.isdigit() says yes to all, int() to some, ASCII to none.
ODD_DIGITS = ["\u00b2", "\u0663", "\u0e53", "\uff13", "\u2460", "\U0001d7d9", "\u1369"]
NUMBER_TEXTS = [
    "2000", " 2000 ", "+2000", "-1", "0", "1e3", "2000.0", "0x7d0", "2_000", "", " ",
    "9" * 25, "9" * 5000, "nan", "inf", "1024\x00", "20\n00", "٣٠٠٠", "²",
]  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from gen3d.serve.local_server import start_server

    log = tmp_path_factory.mktemp("fuzz-options") / "server.log"
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
    srv.stop(10)


def fuzz_number(rng: np.random.Generator) -> Any:
    """A value where a client should write a number: sometimes a good one."""
    kind = int(rng.integers(0, 9))
    if kind == 0:
        return int(rng.integers(-(2**40), 2**40))
    if kind == 1:
        return int(rng.choice([500, 2000, 200_000, 512, 1024, 2048]))  # in range
    if kind == 2:
        return "".join(rng.choice(ODD_DIGITS, size=int(rng.integers(1, 5))))
    if kind == 3:
        return str(rng.choice(NUMBER_TEXTS))
    if kind == 4:
        return float(rng.choice([1.5, -0.0, 1e308, 2000.0]))
    if kind == 5:
        return bool(rng.integers(0, 2))
    if kind == 6:
        return None
    if kind == 7:
        return nested(int(rng.integers(1, 40)))
    return {"value": 2000} if rng.integers(0, 2) else ["2000"]


def nested(depth: int) -> Any:
    value: Any = 1
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


def fuzz_options(rng: np.random.Generator) -> dict[str, Any]:
    keys = [*sorted(COMMON), "unknown", "seed"]
    chosen = rng.choice(keys, size=int(rng.integers(1, 4)), replace=False)
    return {str(key): fuzz_number(rng) for key in chosen}


def mangle(text: str, rng: np.random.Generator) -> str:
    """JSON text as a broken client sends it: cut, spliced, or left alone."""
    kind = int(rng.integers(0, 4))
    if kind == 0 and text:
        return text[: int(rng.integers(0, len(text)))]
    if kind == 1:
        pos = int(rng.integers(0, len(text) + 1))
        return (
            text[:pos] + str(rng.choice(["[" * 3000, "{", "\\ud800", "9" * 5000, ","])) + text[pos:]
        )
    if kind == 2:
        return "[" * int(rng.integers(10, 60_000))
    return text


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def send(server, form: str, rng: np.random.Generator, photo: bytes) -> requests.Response:
    options, seed = fuzz_options(rng), fuzz_number(rng)
    if form == "json":
        body = json.dumps({"image": b64(photo), "options": options, "seed": seed})
        return requests.post(
            server.url + "/invocations",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
    if form == "multipart":
        fields = {"options": mangle(json.dumps(options), rng), "seed": as_text(seed)}
        return requests.post(
            server.url + "/invocations",
            files={"image": ("a.png", photo, "image/png")},
            data=fields,
            timeout=30,
        )
    pairs = [f"{key}={as_text(value)}" for key, value in {**options, "seed": seed}.items()]
    header = ",".join(pairs).replace("\r", " ").replace("\n", " ").replace("\x00", " ")
    return requests.post(
        server.url + "/invocations",
        data=photo,
        headers={"Content-Type": "image/png", CUSTOM_ATTRIBUTES: header.encode("utf-8")[:8000]},
        timeout=30,
    )


@pytest.mark.parametrize("form", ["json", "multipart", "custom-attributes"])
def test_fuzzed_numbers_and_json_never_get_a_5xx(server, form: str) -> None:
    rng = np.random.default_rng(["json", "multipart", "custom-attributes"].index(form))
    photo = rgba_png(32)
    before = gunicorn_workers(server)
    statuses = []
    for _ in range(ROUNDS):
        response = send(server, form, rng, photo)
        statuses.append(response.status_code)
        assert response.status_code < 500, (response.status_code, response.text[:300])
        if response.status_code != 200:
            assert response.json()["error"]["code"]
    assert requests.get(server.url + "/ping", timeout=5).status_code == 200
    assert gunicorn_workers(server) == before
    assert any(s >= 400 for s in statuses)  # the fuzz really broke some requests
    assert "Traceback" not in server.log(500_000)
