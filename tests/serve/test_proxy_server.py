"""Dynamic batching, back-pressure and deadlines on a real server with the proxy backend."""

from __future__ import annotations

import io
import json
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
import trimesh
from gen3d_testing import GEN3D, rgba_png

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def proxy_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("proxy") / "tiny"
    subprocess.run(
        [
            GEN3D,
            "proxy",
            "init",
            "--size",
            "tiny",
            "--seed",
            "0",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return out


def env(model: Path, **extra: str) -> dict[str, str]:
    return {"GEN3D_BACKEND": "proxy", "GEN3D_MODEL_DIR": str(model), "GEN3D_DEVICE": "cpu", **extra}


def invoke(url: str, body: bytes, seed: int) -> requests.Response:
    return requests.post(
        url + "/invocations",
        data=body,
        timeout=120,
        headers={"Content-Type": "image/png", "X-Amzn-SageMaker-Custom-Attributes": f"seed={seed}"},
    )


def geometry(response: requests.Response) -> np.ndarray:
    mesh = trimesh.load(io.BytesIO(response.content), file_type="glb", force="mesh", process=False)
    return np.asarray(mesh.vertices)


@pytest.mark.slow
@pytest.mark.heavy
def test_concurrent_requests_are_batched_and_equal_their_solo_runs(
    start_gen3d_server, proxy_dir
) -> None:
    srv = start_gen3d_server(
        env(proxy_dir, GEN3D_MAX_BATCH_SIZE="8", GEN3D_MAX_BATCH_DELAY_MS="100"), timeout_s=120
    )
    bodies = [rgba_png(64, seed=i) for i in range(16)]
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda i: invoke(srv.url, bodies[i], i), range(16)))
    assert [r.status_code for r in together] == [200] * 16
    sizes = [json.loads(r.headers["X-Gen3D-Metadata"])["batch_size"] for r in together]
    assert max(sizes) > 1, sizes
    for i, response in enumerate(together):
        solo = invoke(srv.url, bodies[i], i)
        assert json.loads(solo.headers["X-Gen3D-Metadata"])["batch_size"] == 1
        a, b = geometry(response), geometry(solo)
        assert a.shape == b.shape and np.allclose(a, b, atol=1e-4)
    meta = json.loads(together[0].headers["X-Gen3D-Metadata"])
    assert meta["backend"] == "proxy" and "no quality claim" in meta["note"]


def test_a_full_queue_answers_503_with_retry_after(start_gen3d_server, proxy_dir) -> None:
    srv = start_gen3d_server(
        env(
            proxy_dir,
            GEN3D_MAX_BATCH_SIZE="1",
            GEN3D_MAX_QUEUE="2",
            GEN3D_MAX_WAITING="0",  # refused at once, not held in the waiting room
            MODEL_SERVER_WORKERS="1",
            GEN3D_WARMUP="0",
        ),
        timeout_s=120,
    )
    body = rgba_png(64)
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda i: invoke(srv.url, body, i), range(16)))
    counts = Counter(r.status_code for r in responses)
    # the queue holds a request from admission (before its body is decoded): with 16 at
    # once, at least the 2 admitted first are served, the others refused before any work
    assert set(counts) == {200, 503} and counts[200] >= 2, counts
    refused = [r for r in responses if r.status_code == 503]
    assert all(r.json()["error"]["code"] == "queue_full" for r in refused)
    assert all(int(r.headers["Retry-After"]) >= 1 for r in refused)
    assert requests.get(srv.url + "/ping", timeout=2).status_code == 200


def test_requests_past_their_deadline_get_504(start_gen3d_server, proxy_dir) -> None:
    srv = start_gen3d_server(
        env(proxy_dir, GEN3D_MAX_BATCH_SIZE="1", GEN3D_REQUEST_TIMEOUT_S="0.05", GEN3D_WARMUP="0"),
        timeout_s=120,
    )
    body = rgba_png(64)
    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda i: invoke(srv.url, body, i), range(12)))
    late = [r for r in responses if r.status_code == 504]
    assert late and all(r.json()["error"]["code"] == "deadline_exceeded" for r in late)
    assert {r.status_code for r in responses} <= {200, 504}, [r.text for r in responses]
