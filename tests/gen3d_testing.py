"""Helpers shared by the tests: real image files made in memory, independent readers."""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path

import numpy as np
import requests
from PIL import Image

from gen3d.serve.backends.synthetic import photo_and_mask

# The installed `gen3d` console script of the interpreter running the tests (the checkout's
# .venv under `make test`, any other environment the project is installed into otherwise).
GEN3D = str(Path(sys.executable).with_name("gen3d"))


def png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    return buffer.getvalue()


def rgba_png(size: int = 96, seed: int = 0) -> bytes:
    image, mask = photo_and_mask(size, seed)
    return png_bytes(np.dstack([image, mask.astype(np.uint8) * 255]))


def post_png(base_url: str, size: int = 96) -> requests.Response:
    """POST an RGBA PNG (alpha = mask) to a server's /invocations, as a client would."""
    return requests.post(
        base_url + "/invocations",
        data=rgba_png(size),
        headers={"Content-Type": "image/png"},
        timeout=30,
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def json_instance(size: int = 96, seed: int = 0, **extra: object) -> dict:
    image, mask = photo_and_mask(size, seed)
    return {
        "image": b64(png_bytes(image)),
        "mask": b64(png_bytes(mask.astype(np.uint8) * 255)),
        **extra,
    }


def glb_json(data: bytes) -> dict:
    """The JSON chunk of a GLB, parsed by pygltflib (an independent reader)."""
    import pygltflib

    gltf = pygltflib.GLTF2.load_from_bytes(data)
    return json.loads(gltf.to_json())


def tiny_onnx_segmenter(path: Path, side: int | None) -> None:
    """A real ONNX graph in the artifact's segmenter contract (gen3d.serve.model.automask):
    foreground probability = the mean of the RGB channels, so white is object."""
    import onnx
    from onnx import TensorProto, helper

    dims: list = [1, 3, side, side] if side else [1, 3, "h", "w"]
    out_dims: list = [1, 1, side, side] if side else [1, 1, "h", "w"]
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["probability"], axes=[1], keepdims=1)],
        "tiny-segmenter",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, out_dims)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by every onnxruntime the extra admits
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


EMULATED_ROLE = "arn:aws:iam::123456789012:role/gen3d-sagemaker"


def make_endpoint(
    name: str, io_bucket: str, *, asynchronous: bool = False, env: dict | None = None
) -> None:
    """A SageMaker model, endpoint config and endpoint `name` on the emulator (ml.m5.large;
    async ones write to `io_bucket`)."""
    import boto3

    sm = boto3.client("sagemaker")
    container: dict = {"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/g:1"}
    if env:
        container["Environment"] = env
    sm.create_model(
        ModelName=f"{name}-m", ExecutionRoleArn=EMULATED_ROLE, PrimaryContainer=container
    )
    extra = {}
    if asynchronous:
        extra["AsyncInferenceConfig"] = {
            "OutputConfig": {
                "S3OutputPath": f"s3://{io_bucket}/async/output/",
                "S3FailurePath": f"s3://{io_bucket}/async/failure/",
            }
        }
    sm.create_endpoint_config(
        EndpointConfigName=f"{name}-c",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": f"{name}-m",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
        **extra,
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-c")
