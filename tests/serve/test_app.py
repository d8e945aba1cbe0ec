"""Routes with injected backends: what a client sees when the model itself misbehaves."""

from __future__ import annotations

import time

import pytest
from gen3d_testing import rgba_png

from gen3d.serve.backends.silhouette import SilhouetteBackend
from gen3d.serve.http.app import create_app
from gen3d.serve.http.forwarded import BEHIND_FRONT_ENV, FORWARDED_AT_HEADER
from gen3d.serve.model.runtime import ModelRuntime
from gen3d.serve.outputs.assets import Asset
from gen3d.serve.settings import Settings


class FlakyBackend(SilhouetteBackend):
    """Silhouette that crashes on seed 666 and kills its thread on seed 999."""

    def predict(self, batch):
        if any(s.seed == 999 for s in batch):
            raise SystemExit("simulated fatal fault in the model thread")
        if any(s.seed == 666 for s in batch):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return super().predict(batch)


def ready_client(backend: SilhouetteBackend):
    runtime = ModelRuntime(Settings(warmup=False, max_batch_delay_ms=0), backend=backend)
    runtime.start()
    deadline = time.monotonic() + 10
    while not runtime.ready and time.monotonic() < deadline:
        time.sleep(0.01)
    return create_app(runtime).test_client()


def invoke(client, seed: int):
    return client.post(
        "/invocations",
        data=rgba_png(48),
        headers={"Content-Type": "image/png", "X-Amzn-SageMaker-Custom-Attributes": f"seed={seed}"},
    )


def test_an_unexpected_model_error_is_a_500_json_and_the_worker_keeps_serving() -> None:
    client = ready_client(FlakyBackend())
    broken = invoke(client, 666)
    assert broken.status_code == 500
    assert broken.json["error"]["code"] == "internal_error"
    assert "illegal memory" not in broken.text and "Traceback" not in broken.text
    assert invoke(client, 1).status_code == 200


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_ping_turns_503_when_the_model_thread_dies() -> None:
    client = ready_client(FlakyBackend())
    assert client.get("/ping").status_code == 200
    assert invoke(client, 999).status_code == 500
    deadline = time.monotonic() + 5  # the thread's end is seen as soon as it has ended
    while (ping := client.get("/ping")).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ping.status_code == 503 and "model thread stopped" in ping.json["error"]["message"]
    assert invoke(client, 1).status_code == 503


def test_an_asset_without_the_requested_format_is_422() -> None:
    class MeshOnly(SilhouetteBackend):
        def predict(self, batch):
            return [Asset(mesh=r.mesh, metadata=r.metadata) for r in super().predict(batch)]

    client = ready_client(MeshOnly())
    response = client.post(
        "/invocations",
        data=rgba_png(48),
        headers={"Content-Type": "image/png", "Accept": "application/ply"},
    )
    assert response.status_code == 422 and "no Gaussian splat" in response.json["error"]["message"]


def _post_forwarded(client, forwarded_at: str):
    return client.post(
        "/invocations",
        data=rgba_png(48),
        headers={"Content-Type": "image/png", FORWARDED_AT_HEADER: forwarded_at},
    )


def test_a_wait_in_the_fronts_backlog_counts_against_the_deadline(monkeypatch) -> None:
    """Behind the front a request may wait in its gunicorn's backlog (a worker being
    replaced): the time since nginx handed it on (its clock, in a header nginx sets) counts
    against the request's deadline, and one already past it is answered 504 without being read."""
    monkeypatch.setenv(BEHIND_FRONT_ENV, "1")
    runtime = ModelRuntime(
        Settings(warmup=False, max_batch_delay_ms=0, request_timeout_s=10), SilhouetteBackend()
    )
    runtime.start()
    deadline = time.monotonic() + 10
    while not runtime.ready and time.monotonic() < deadline:
        time.sleep(0.01)
    behind = create_app(runtime).test_client()
    late = _post_forwarded(behind, f"{time.time() - 12:.3f}")
    assert late.status_code == 504 and late.json["error"]["code"] == "deadline_exceeded"
    assert _post_forwarded(behind, f"{time.time() - 1:.3f}").status_code == 200
    assert _post_forwarded(behind, "not a time").status_code == 200
    assert _post_forwarded(behind, "nan").status_code == 200
    # without the front the header is the client's own: it means nothing
    monkeypatch.delenv(BEHIND_FRONT_ENV)
    direct = create_app(runtime).test_client()
    assert _post_forwarded(direct, f"{time.time() - 12:.3f}").status_code == 200
