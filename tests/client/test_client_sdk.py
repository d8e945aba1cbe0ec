"""The `gen3d[sagemaker]` extra: our serializers and deserializer against the real server,
the predictor through the SDK's own Endpoint against moto; and the core client never
imports the SDK."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
from gen3d_testing import photo_and_mask, rgba_png

from gen3d.client import Client, Result, UnprocessableError

REPO = Path(__file__).resolve().parents[2]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO
    )


def test_the_core_client_does_not_import_the_sdk() -> None:
    done = run_python(
        "import sys\n"
        "import gen3d.client as c\n"
        "from gen3d.client import Client\n"
        "Client.local('http://127.0.0.1:9', progress=None)\n"
        "import gen3d.client.endpoint, gen3d.client.async_endpoint, gen3d.cli.commands.invoke\n"
        "import boto3; boto3.client('sagemaker-runtime', region_name='us-east-1')\n"
        "print(sorted(m for m in sys.modules if m == 'sagemaker' or m.startswith('sagemaker.')))\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_without_the_extra_the_sdk_module_says_how_to_get_it() -> None:
    done = run_python("import sys; sys.modules['sagemaker'] = None; import gen3d.client.sdk")
    assert done.returncode == 1
    assert "pip install 'gen3d[sagemaker]'" in done.stderr


@pytest.fixture
def sdk():
    return pytest.importorskip("gen3d.client.sdk", reason="gen3d[sagemaker] is not installed")


def post(url: str, body: bytes, content_type: str, accept: str) -> requests.Response:
    return requests.post(
        url + "/invocations",
        data=body,
        headers={"Content-Type": content_type, "Accept": accept},
        timeout=60,
    )


def test_serializers_and_deserializer_round_trip_with_the_real_server(sdk, default_server):
    srv = default_server
    image, mask = photo_and_mask(80)
    reference = Client.local(srv.url, progress=None).generate(image, mask, seed=5)

    serializer = sdk.Gen3DSerializer(seed=5)
    deserializer = sdk.Gen3DDeserializer()
    body = serializer.serialize({"image": image, "mask": mask})
    assert serializer.CONTENT_TYPE == "application/json"
    for accept in ("application/json", "model/gltf-binary"):
        answer = post(srv.url, body, serializer.CONTENT_TYPE, accept)
        result = deserializer.deserialize(
            io.BytesIO(answer.content), answer.headers["Content-Type"]
        )
        assert isinstance(result, Result) and result.metadata["seed"] == 5
        assert np.array_equal(result.to_trimesh().vertices, reference.to_trimesh().vertices)

    multipart = sdk.Gen3DMultipartSerializer(format="ply")
    body = multipart.serialize((image, mask))
    answer = post(srv.url, body, multipart.CONTENT_TYPE, "application/ply")
    ply = deserializer.deserialize(io.BytesIO(answer.content), answer.headers["Content-Type"])
    assert ply.format == "ply" and len(ply.to_trimesh().vertices) > 100

    batch = serializer.serialize([rgba_png(48), {"image": image, "mask": np.zeros_like(mask)}])
    for accept in ("application/json", "application/zip"):
        answer = post(srv.url, batch, "application/json", accept)
        results = deserializer.deserialize(
            io.BytesIO(answer.content), answer.headers["Content-Type"]
        )
        assert isinstance(results[0], Result) and results[0].to_trimesh().is_watertight, accept
        assert isinstance(results[1], UnprocessableError) and "empty" in results[1].message


def test_predictor_round_trips_through_the_sdk_endpoint(sdk, aws, default_server) -> None:
    """The SDK's Endpoint.invoke sends our serializer's body to moto's InvokeEndpoint,
    which answers with what the real server answered; the deserializer turns it back."""
    srv = default_server
    image, mask = photo_and_mask(64)
    body = sdk.Gen3DSerializer(seed=2).serialize({"image": image, "mask": mask})
    answer = post(srv.url, body, "application/json", "application/json")
    assert answer.status_code == 200
    requests.post(
        f"{aws}/moto-api/static/sagemaker/endpoint-results",
        json={"results": [{"Body": answer.text, "ContentType": "application/json"}]},
        timeout=10,
    ).raise_for_status()
    predictor = sdk.Gen3DPredictor("gen3d-sdk", region="us-east-1", seed=2)
    result = predictor.predict(image, mask)
    expected = json.loads(answer.text)
    assert result.metadata == expected["metadata"] and result.format == "glb"
    assert result.to_trimesh().is_watertight
