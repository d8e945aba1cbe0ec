"""Client.endpoint and Client.async_endpoint. The control plane and async runs go to a
real moto server; the runtime calls moto lacks (a binary InvokeEndpoint body, inference
components, error answers) run at botocore's Stubber seam, each request checked against
the service model (tests/aws_requests.py) and serialised with botocore's own
serializer to read the headers that would go on the wire."""

from __future__ import annotations

import base64
import email.parser
import io
import json
import time

import aws_requests
import boto3
import numpy as np
import pytest
import requests
import trimesh
from botocore.response import StreamingBody
from botocore.serialize import create_serializer
from botocore.stub import Stubber
from gen3d_testing import EMULATED_ROLE, make_endpoint, rgba_png

from gen3d.client import (
    AsyncInferenceError,
    AwsError,
    Backoff,
    Client,
    DeadlineExceededError,
    EndpointNotReadyError,
    InputError,
    QueueFullError,
    Result,
    UnprocessableError,
)
from gen3d.serve.outputs.assets import Mesh, mesh_to_glb, mesh_to_obj

ROLE = EMULATED_ROLE
IO_BUCKET = "gen3d-client-io"
FAST = Backoff(first_s=0.01, factor=2, max_s=0.05)


def box_mesh() -> Mesh:
    box = trimesh.creation.box()
    colours = np.full((len(box.vertices), 4), 200, np.uint8)
    return Mesh(box.vertices, box.faces, colours)


def glb_answer(**metadata) -> bytes:
    return mesh_to_glb(box_mesh(), {"backend": "silhouette", **metadata})


@pytest.fixture
def s3(aws: str):
    client = boto3.client("s3")
    client.create_bucket(Bucket=IO_BUCKET)
    return client


class Runtime:
    """A sagemaker-runtime client behind a Stubber; every InvokeEndpoint request is
    checked against the service model and kept with the headers it would send."""

    def __init__(self) -> None:
        self.client = boto3.client("sagemaker-runtime", region_name="us-east-1")
        self.stub = Stubber(self.client)
        self.sent: list[dict] = []
        self.client.meta.events.register(
            "before-parameter-build.sagemaker-runtime.InvokeEndpoint", self._keep
        )
        self.stub.activate()

    def _keep(self, params, **_):
        aws_requests.validate_strictly("sagemaker-runtime", "InvokeEndpoint", params)
        operation = self.client.meta.service_model.operation_model("InvokeEndpoint")
        wire = create_serializer("rest-json").serialize_to_request(dict(params), operation)
        self.sent.append({"params": dict(params), "headers": dict(wire["headers"])})

    def answer(self, body: bytes, content_type: str = "model/gltf-binary") -> None:
        # no expected_params: the request is checked (strictly) and kept by _keep
        self.stub.add_response(
            "invoke_endpoint",
            {"Body": StreamingBody(io.BytesIO(body), len(body)), "ContentType": content_type},
        )

    def error(self, code: str, message: str, status: int, **fields) -> None:
        self.stub.add_client_error(
            "invoke_endpoint",
            service_error_code=code,
            service_message=message,
            http_status_code=status,
            modeled_fields=fields or None,
        )


def multipart_parts(body: bytes, content_type: str) -> dict[str, bytes]:
    """Parse multipart/form-data with the standard library's email parser (independent of
    urllib3, which wrote it)."""
    message = email.parser.BytesParser().parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    return {
        part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
        for part in message.get_payload()
    }


# ------------------------------------------------------------------ real-time


def test_realtime_sends_the_photo_and_reads_the_glb(aws) -> None:
    make_endpoint("rt", IO_BUCKET, env={"GEN3D_MAX_BATCH_ITEMS": "2", "GEN3D_MAX_BODY_MB": "4"})
    runtime = Runtime()
    runtime.answer(glb_answer(seed=7, request_id="r-1"))
    client = Client.endpoint("rt", runtime=runtime.client, progress=None)
    assert client.transport.limits().max_batch_items == 2  # read from the model's env
    assert client.transport.limits().max_body_bytes == 4 * 1024 * 1024
    photo = rgba_png(64)
    result = client.generate(photo, seed=7)
    assert result.metadata == {"backend": "silhouette", "seed": 7, "request_id": "r-1"}
    assert result.to_trimesh().is_watertight
    (sent,) = runtime.sent
    assert sent["params"]["EndpointName"] == "rt" and "InferenceComponentName" not in sent["params"]
    headers = sent["headers"]
    assert headers["Accept"] == "model/gltf-binary"
    assert headers["X-Amzn-SageMaker-Custom-Attributes"] == "seed=7,format=glb"
    assert "X-Amzn-SageMaker-Inference-Component" not in headers
    parts = multipart_parts(sent["params"]["Body"], headers["Content-Type"])
    assert parts["image"] == photo and parts["seed"] == b"7" and parts["format"] == b"glb"


def test_inference_components_get_the_header_and_retry_while_scaling_from_zero(aws):
    """An endpoint in Updating (autoscaling adding capacity) hosting one component at zero
    copies: the first invocations fail with no capacity, then a copy answers."""
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    control = Stubber(sagemaker)
    control.add_response(
        "describe_endpoint",
        {
            "EndpointName": "ic",
            "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/ic",
            "EndpointConfigName": "ic-ic-1",
            "EndpointStatus": "Updating",
            "CreationTime": "2026-01-01T00:00:00Z",
            "LastModifiedTime": "2026-01-01T00:00:00Z",
        },
        {"EndpointName": "ic"},
    )
    control.add_response(
        "describe_endpoint_config",
        {
            "EndpointConfigName": "ic-ic-1",
            "EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/ic",
            "CreationTime": "2026-01-01T00:00:00Z",
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "InstanceType": "ml.g5.xlarge",
                    "InitialInstanceCount": 1,
                    "ManagedInstanceScaling": {
                        "Status": "ENABLED",
                        "MinInstanceCount": 0,
                        "MaxInstanceCount": 2,
                    },
                }
            ],
        },
        {"EndpointConfigName": "ic-ic-1"},
    )
    control.add_response(
        "list_inference_components",
        {
            "InferenceComponents": [
                {
                    "InferenceComponentName": "ic-component",
                    "InferenceComponentArn": "arn:aws:sagemaker:us-east-1:123456789012:"
                    "inference-component/ic-component",
                    "EndpointName": "ic",
                    "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/ic",
                    "VariantName": "AllTraffic",
                    "InferenceComponentStatus": "InService",
                    "CreationTime": "2026-01-01T00:00:00Z",
                    "LastModifiedTime": "2026-01-01T00:00:00Z",
                }
            ]
        },
        {"EndpointNameEquals": "ic"},
    )
    control.add_response(
        "describe_inference_component",
        {
            "InferenceComponentName": "ic-component",
            "InferenceComponentArn": "arn:aws:sagemaker:us-east-1:123456789012:"
            "inference-component/ic-component",
            "EndpointName": "ic",
            "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/ic",
            "CreationTime": "2026-01-01T00:00:00Z",
            "LastModifiedTime": "2026-01-01T00:00:00Z",
            "Specification": {"ModelName": "ic-model"},
        },
        {"InferenceComponentName": "ic-component"},
    )
    control.add_response(
        "describe_model",
        {
            "ModelName": "ic-model",
            "ModelArn": "arn:aws:sagemaker:us-east-1:123456789012:model/ic-model",
            "CreationTime": "2026-01-01T00:00:00Z",
            "PrimaryContainer": {"Environment": {"GEN3D_MAX_BATCH_ITEMS": "4"}},
        },
        {"ModelName": "ic-model"},
    )
    control.activate()
    runtime = Runtime()
    # the message SageMaker gives while an inference component has no copy (AWS ML blog,
    # "scale down to zero", Dec 2024)
    no_capacity = (
        "Inference Component has no capacity to process this request. ApplicationAutoScaling"
        " may be in-progress (if configured) or try to increase the capacity by invoking "
        "UpdateInferenceComponentRuntimeConfig API."
    )
    runtime.error("ValidationError", no_capacity, 400)
    runtime.error("ValidationError", no_capacity, 400)
    runtime.answer(glb_answer())
    lines: list[str] = []
    client = Client.endpoint(
        "ic", sagemaker=sagemaker, runtime=runtime.client, backoff=FAST, progress=lines.append
    )
    control.assert_no_pending_responses()
    assert client.transport.limits().max_batch_items == 4
    result = client.generate(rgba_png(32))
    assert isinstance(result, Result) and result.metadata["backend"] == "silhouette"
    assert len(runtime.sent) == 3
    for sent in runtime.sent:
        assert sent["params"]["InferenceComponentName"] == "ic-component"
        assert sent["headers"]["X-Amzn-SageMaker-Inference-Component"] == "ic-component"
    assert len(lines) == 2 and all("no capacity yet (scaling from zero)" in ln for ln in lines)
    assert "retrying in" in lines[0]


def test_scaling_from_zero_gives_up_after_the_scale_timeout(aws) -> None:
    runtime = Runtime()
    for _ in range(50):
        runtime.error(
            "ValidationError",
            "Inference Component has no capacity to process this request.",
            400,
        )
    client = Client.endpoint(
        "ic",
        runtime=runtime.client,
        discover=False,
        inference_component="ic-component",
        backoff=FAST,
        scale_timeout_s=0.2,
        progress=None,
    )
    started = time.monotonic()
    with pytest.raises(EndpointNotReadyError, match="still none after"):
        client.generate(rgba_png(32))
    assert 0.2 <= time.monotonic() - started < 5


def test_serverless_provisioning_is_retried(aws) -> None:
    runtime = Runtime()
    runtime.error("ModelNotReadyException", "the serverless variant is being provisioned", 429)
    runtime.answer(glb_answer())
    lines: list[str] = []
    client = Client.endpoint(
        "sl", runtime=runtime.client, discover=False, backoff=FAST, progress=lines.append
    )
    assert client.generate(rgba_png(32)).format == "glb"
    assert len(runtime.sent) == 2 and "being provisioned" in lines[0]


def test_container_errors_come_back_typed(aws) -> None:
    """SageMaker wraps the container's non-2xx answer as ModelError (424) with the
    original status and body; queue_full is retried, 422 is not."""
    runtime = Runtime()
    body = {"error": {"code": "unprocessable", "message": "the mask is empty", "request_id": "q"}}
    runtime.error(
        "ModelError",
        "Received client error (422) from primary with message ...",
        424,
        OriginalStatusCode=422,
        OriginalMessage=json.dumps(body),
    )
    full = {"error": {"code": "queue_full", "message": "the queue is full", "request_id": "z"}}
    runtime.error(
        "ModelError",
        "Received server error (503)",
        424,
        OriginalStatusCode=503,
        OriginalMessage=json.dumps(full),
    )
    runtime.answer(glb_answer())
    lines: list[str] = []
    client = Client.endpoint(
        "rt", runtime=runtime.client, discover=False, backoff=FAST, progress=lines.append
    )
    with pytest.raises(UnprocessableError) as caught:
        client.generate(rgba_png(32))
    assert caught.value.http_status == 422 and caught.value.request_id == "q"
    assert client.generate(rgba_png(32)).format == "glb"  # after one queue_full retry
    assert len(lines) == 1 and "queue_full" in lines[0]

    runtime.error(
        "ModelError", "busy", 424, OriginalStatusCode=503, OriginalMessage=json.dumps(full)
    )
    with pytest.raises(QueueFullError):
        Client.endpoint(
            "rt", runtime=runtime.client, discover=False, max_retries=0, progress=None
        ).generate(rgba_png(32))


def test_endpoint_status_decides_what_is_refused(aws) -> None:
    def described(status: str, reason: str | None = None) -> Stubber:
        sagemaker = boto3.client("sagemaker", region_name="us-east-1")
        stub = Stubber(sagemaker)
        response = {
            "EndpointName": "e",
            "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/e",
            "EndpointConfigName": "e-c",
            "EndpointStatus": status,
            "CreationTime": "2026-01-01T00:00:00Z",
            "LastModifiedTime": "2026-01-01T00:00:00Z",
        }
        if reason:
            response["FailureReason"] = reason
        stub.add_response("describe_endpoint", response, {"EndpointName": "e"})
        stub.add_response(
            "describe_endpoint_config",
            {
                "EndpointConfigName": "e-c",
                "EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/e",
                "CreationTime": "2026-01-01T00:00:00Z",
                "ProductionVariants": [
                    {
                        "VariantName": "AllTraffic",
                        "ServerlessConfig": {"MemorySizeInMB": 4096, "MaxConcurrency": 2},
                        "ModelName": "e-m",
                    }
                ],
            },
        )
        stub.add_client_error("describe_model", "ValidationException", "no access", 400)
        stub.activate()
        return sagemaker

    runtime = boto3.client("sagemaker-runtime", region_name="us-east-1")
    for status in ("InService", "Updating", "SystemUpdating", "RollingBack"):
        client = Client.endpoint("e", sagemaker=described(status), runtime=runtime)
        assert client.transport.info.kind == "serverless", status
    with pytest.raises(EndpointNotReadyError, match=r"is Creating.*wait until it is InService"):
        Client.endpoint("e", sagemaker=described("Creating"), runtime=runtime)
    with pytest.raises(EndpointNotReadyError, match=r"is Failed.*image not found"):
        Client.endpoint("e", sagemaker=described("Failed", "image not found"), runtime=runtime)


def test_a_missing_endpoint_is_an_aws_error(aws) -> None:
    with pytest.raises(AwsError, match="endpoint absent: ValidationException"):
        Client.endpoint("absent")
    make_endpoint("as", IO_BUCKET, asynchronous=True)
    with pytest.raises(InputError, match=r"is async: use Client\.async_endpoint"):
        Client.endpoint("as")


# ------------------------------------------------------------------ async


def queue_async(moto: str, *results: dict) -> None:
    requests.post(
        f"{moto}/moto-api/static/sagemaker/async-endpoint-results",
        json={"results": list(results)},
        timeout=10,
    ).raise_for_status()


def test_async_uploads_invokes_and_waits_for_the_output(aws, s3) -> None:
    make_endpoint("as", IO_BUCKET, asynchronous=True)
    obj = mesh_to_obj(box_mesh(), {"backend": "silhouette"})
    queue_async(aws, {"data": obj.decode()})
    lines: list[str] = []
    client = Client.async_endpoint("as", poll_s=0.01, timeout_s=10, progress=lines.append)
    photo = rgba_png(48)
    result = client.generate(photo, format="obj")
    assert result.format == "obj" and result.data == obj
    assert len(result.to_trimesh().faces) == 12
    (upload,) = s3.list_objects_v2(Bucket=IO_BUCKET, Prefix="async/input/")["Contents"]
    stored = s3.get_object(Bucket=IO_BUCKET, Key=upload["Key"])
    assert upload["Key"].endswith(".json") and stored["ContentType"] == "application/json"
    sent = json.loads(stored["Body"].read())
    assert base64.b64decode(sent["image"]) == photo and sent["format"] == "obj"
    assert any(line.startswith("uploaded ") for line in lines)
    assert any(line.startswith("queued as ") for line in lines)


def test_async_failures_are_typed(aws, s3) -> None:
    make_endpoint("as", IO_BUCKET, asynchronous=True)
    ours = {"error": {"code": "unprocessable", "message": "the mask is empty", "request_id": "x"}}
    queue_async(
        aws,
        {"is_failure": True, "data": json.dumps(ours)},
        {"is_failure": True, "data": "Invocation timed out after 900 seconds"},
    )
    client = Client.async_endpoint("as", poll_s=0.01, timeout_s=10, progress=None)
    with pytest.raises(UnprocessableError, match="the mask is empty"):
        client.generate(rgba_png(32))
    with pytest.raises(AsyncInferenceError, match="timed out after 900 seconds"):
        client.generate(rgba_png(33))


def test_async_deadline_returns_a_handle_to_wait_on_later(aws, s3) -> None:
    make_endpoint("as", IO_BUCKET, asynchronous=True)
    obj = mesh_to_obj(box_mesh(), {})
    queue_async(aws, {"data": obj.decode()})
    client = Client.async_endpoint("as", poll_s=0.01, timeout_s=0.3, progress=None)
    job = client.submit(rgba_png(32), format="obj")
    # take the output away, as if the endpoint were still working on it
    out_bucket, _, out_key = job.output_location.removeprefix("s3://").partition("/")
    s3.delete_object(Bucket=out_bucket, Key=out_key)
    assert not job.done()
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError, match="may still arrive") as caught:
        job.wait(timeout_s=0.3)
    assert 0.3 <= time.monotonic() - started < 5 and caught.value.job is job
    s3.put_object(Bucket=out_bucket, Key=out_key, Body=obj)
    assert job.done() and caught.value.job.wait(timeout_s=5).data == obj


def test_async_generate_many_queues_every_batch_first(aws, s3) -> None:
    make_endpoint("as", IO_BUCKET, asynchronous=True, env={"GEN3D_MAX_BATCH_ITEMS": "2"})

    def prediction(i: int) -> dict:
        data = mesh_to_obj(box_mesh(), {"i": i})
        return {"format": "obj", "data": base64.b64encode(data).decode(), "metadata": {"i": i}}

    queue_async(
        aws,
        {"data": json.dumps({"predictions": [prediction(0), prediction(1)]})},
        {"data": json.dumps({"predictions": [prediction(2)]})},
    )
    client = Client.async_endpoint("as", poll_s=0.01, timeout_s=10, progress=None)
    results = client.generate_many([rgba_png(20 + i) for i in range(3)], format="obj")
    assert [r.metadata["i"] for r in results] == [0, 1, 2]
    uploads = s3.list_objects_v2(Bucket=IO_BUCKET, Prefix="async/input/")["Contents"]
    bodies = [
        json.loads(s3.get_object(Bucket=IO_BUCKET, Key=u["Key"])["Body"].read()) for u in uploads
    ]
    assert sorted(len(b["instances"]) for b in bodies) == [1, 2]


def test_every_runtime_request_the_client_builds_is_valid(aws, s3) -> None:
    """InvokeEndpointAsync bodies too; and the strict check does reject bad values."""
    make_endpoint("as", IO_BUCKET, asynchronous=True)
    seen: list[dict] = []
    runtime = boto3.client("sagemaker-runtime")
    runtime.meta.events.register(
        "before-parameter-build.sagemaker-runtime.InvokeEndpointAsync",
        lambda params, **_: seen.append(dict(params)),
    )
    queue_async(aws, {"data": "x"})
    client = Client.async_endpoint("as", runtime=runtime, poll_s=0.01, progress=None)
    client.submit(rgba_png(16), input_s3_uri=f"s3://{IO_BUCKET}/async/input/chosen.json")
    (params,) = seen
    aws_requests.validate_strictly("sagemaker-runtime", "InvokeEndpointAsync", params)
    assert params["InputLocation"] == f"s3://{IO_BUCKET}/async/input/chosen.json"
    assert "InvocationTimeoutSeconds" not in params  # AWS's 900 s, as the model's env
    bad = aws_requests.request_problems(
        "sagemaker-runtime",
        "InvokeEndpointAsync",
        {**params, "InvocationTimeoutSeconds": 99_999, "EndpointName": "x" * 64},
    )
    assert len(bad) == 2
    assert aws_requests.request_problems(
        "sagemaker-runtime",
        "InvokeEndpoint",
        {"EndpointName": "e", "Body": b"x", "InferenceComponentName": "bad_name"},
    )
