"""The request path without Flask (InvocationService), external backends, and what a
backend's own exceptions become: Unprocessable is the client's 422, anything else a 500
whose traceback and request id stay in the server log."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import torch
import trimesh
from gen3d_testing import json_instance, post_png, rgba_png

from gen3d.serve.backends import create_backend, lookup
from gen3d.serve.backends.silhouette import SilhouetteBackend
from gen3d.serve.errors import InternalError, NotAcceptable, NotReady, Unprocessable
from gen3d.serve.http import codecs
from gen3d.serve.http.service import InvocationService
from gen3d.serve.model.runtime import ModelRuntime
from gen3d.serve.outputs import usdz
from gen3d.serve.settings import Settings, SettingsError

PLUGINS = Path(__file__).resolve().parents[1] / "fixtures" / "plugins"


class InternalBugBackend(SilhouetteBackend):
    """Silhouette whose seed 13 trips a library's ValueError (not the client's fault)."""

    def _one(self, sample):
        if sample.seed == 13:
            np.zeros(3).reshape(2, 2)  # ValueError: cannot reshape array of size 3
        return super()._one(sample)


def ready_service(backend=None) -> InvocationService:
    runtime = ModelRuntime(Settings(warmup=False, max_batch_delay_ms=0), backend=backend)
    runtime.start()
    deadline = time.monotonic() + 10
    while not runtime.ready and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runtime.ready, runtime.failure
    return InvocationService(runtime)


def decoded_batch(*seeds: int) -> codecs.DecodedRequest:
    body = json.dumps({"instances": [{**json_instance(48, s), "seed": s} for s in seeds]})
    return codecs.decode_json(body.encode(), codecs.Defaults(), ready_limits())


def ready_limits() -> codecs.Limits:
    return codecs.Limits(1 << 24, 16, needs_mask=True, options=SilhouetteBackend.options)


def test_a_batch_runs_without_flask_and_keeps_request_order() -> None:
    service = ready_service(SilhouetteBackend())
    outcome = service.invoke(decoded_batch(3, 4), "application/json", "req-1")
    assert [r.metadata["seed"] for r in outcome.results] == [3, 4]
    assert {r.metadata["request_id"] for r in outcome.results} == {"req-1"}
    answer = outcome.encode()
    predictions = json.loads(answer.body)["predictions"]
    assert answer.media_type == "application/json" and len(predictions) == 2
    mesh = trimesh.load(
        trimesh.util.wrap_as_stream(codecs.base64.b64decode(predictions[0]["data"])),
        file_type="glb",
        force="mesh",
    )
    assert mesh.is_watertight


def test_an_unacceptable_accept_is_refused_before_any_work() -> None:
    service = ready_service(SilhouetteBackend())
    batcher = service.runtime.batcher
    with pytest.raises(NotAcceptable):
        service.invoke(decoded_batch(1), "image/gif", "req-2")
    assert batcher is not None and batcher._queue.qsize() == 0


def test_not_ready_is_a_503_with_retry_after() -> None:
    runtime = ModelRuntime(Settings(warmup=False), backend=SilhouetteBackend())  # not started
    with pytest.raises(NotReady) as info:
        InvocationService(runtime).invoke(decoded_batch(1), None, "req-3")
    assert info.value.status == 503 and info.value.retry_after_s


def test_a_backends_internal_value_error_is_a_500_logged_with_the_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = ready_service(InternalBugBackend())
    with caplog.at_level(logging.ERROR, logger="gen3d.batching"):
        outcome = service.invoke(decoded_batch(13, 2), "application/json", "req-bug-13")
    bad, good = outcome.results
    assert isinstance(bad, InternalError) and bad.status == 500
    assert "reshape" not in bad.message  # the library's text stays in the log
    assert good.metadata["seed"] == 2  # the other item is served
    logged = [r for r in caplog.records if "req-bug-13" in r.getMessage()]
    assert logged and logged[0].exc_info and "reshape" in str(logged[0].exc_info[1])


def test_a_backends_unprocessable_is_the_clients_422() -> None:
    service = ready_service(SilhouetteBackend())
    instance = json_instance(48, options={"resolution": 9999})
    decoded = codecs.decode_json(json.dumps(instance).encode(), codecs.Defaults(), ready_limits())
    outcome = service.invoke(decoded, "application/json", "req-4")
    assert isinstance(outcome.results[0], Unprocessable)
    with pytest.raises(Unprocessable, match="'resolution' must be an integer"):
        outcome.encode()


def test_internal_value_error_through_a_real_server_is_500_and_logged(
    start_gen3d_server, tmp_path: Path
) -> None:
    """Real gunicorn, backend given as module:Class from outside the package."""
    (tmp_path / "buggy_backend.py").write_text(
        "from gen3d.serve.backends.silhouette import SilhouetteBackend\n"
        "import numpy as np\n"
        "class Buggy(SilhouetteBackend):\n"
        "    def _one(self, sample):\n"
        "        np.zeros(3).reshape(2, 2)\n"
    )
    server = start_gen3d_server(
        {"GEN3D_BACKEND": "buggy_backend:Buggy", "PYTHONPATH": str(tmp_path), "GEN3D_WARMUP": "0"}
    )
    response = requests.post(
        server.url + "/invocations",
        data=rgba_png(48),
        headers={"Content-Type": "image/png", "X-Amzn-RequestId": "req-real-500"},
        timeout=30,
    )
    assert response.status_code == 500
    assert response.json()["error"] == {
        "code": "internal_error",
        "message": "the model failed on this input; see the server log",
        "request_id": "req-real-500",
    }
    deadline = time.monotonic() + 10  # log lines are written by a background thread
    while "req-real-500: the backend" not in server.log(100_000) and time.monotonic() < deadline:
        time.sleep(0.05)
    log = server.log(100_000)
    assert "request req-real-500: the backend failed on one sample" in log
    assert "Traceback" in log and "cannot reshape" in log
    assert requests.get(server.url + "/ping", timeout=5).status_code == 200


def test_the_documented_example_backend_is_served_by_its_import_path(start_gen3d_server) -> None:
    server = start_gen3d_server(
        {
            "GEN3D_BACKEND": "gen3d_example_backend:CubeBackend",
            "PYTHONPATH": str(PLUGINS),
        }
    )
    response = post_png(server.url, 48)
    assert response.status_code == 200, response.text
    mesh = trimesh.load(trimesh.util.wrap_as_stream(response.content), file_type="glb")
    mesh = mesh.to_geometry() if hasattr(mesh, "to_geometry") else mesh.dump(concatenate=True)
    assert len(mesh.faces) == 12 and mesh.is_watertight
    assert json.loads(response.headers["X-Gen3D-Metadata"])["backend"] == "cube"


def test_backend_names_resolve_through_one_registry() -> None:
    assert lookup("silhouette").gpu is False and lookup("sam3d").gpu is True
    assert lookup("pkg.mod:Cls").target == "pkg.mod:Cls"
    with pytest.raises(ValueError, match="one of silhouette, proxy, sam3d"):
        lookup("nerf")
    with pytest.raises(SettingsError, match="GEN3D_BACKEND"):
        Settings.from_env({"GEN3D_BACKEND": "not a path"})
    with pytest.raises(TypeError, match="Backend protocol"):
        create_backend("gen3d.serve.settings:Settings")


class GpuClaimingBackend(SilhouetteBackend):
    """Says it computes on a GPU (a torch.device), as the proxy and sam3d backends do."""

    device = torch.device("cuda")


@pytest.mark.parametrize(
    ("backend", "on_model_thread"),
    [(SilhouetteBackend(), True), (GpuClaimingBackend(), False)],
)
def test_answers_are_encoded_after_the_model_on_cpu_and_beside_it_on_a_gpu(
    backend, on_model_thread: bool
) -> None:
    service = ready_service(backend)
    assert service.runtime.batcher.finish_on_model_thread is on_model_thread
    outcome = service.invoke(decoded_batch(3), "application/json", "req-2")
    body = json.loads(outcome.encode().body)
    assert body["predictions"][0]["metadata"]["request_id"] == "req-2"
    assert outcome.encode_ms > 0


def test_usd_is_imported_while_loading_not_by_the_first_request() -> None:
    usdz.available.cache_clear()
    ready_service(SilhouetteBackend())
    assert usdz.available.cache_info().currsize == 1


class NoWeightsBackend(SilhouetteBackend):
    def load(self, model_dir, settings) -> None:
        raise RuntimeError("no weights here")
