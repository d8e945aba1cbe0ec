"""Issue 15's options through a real gunicorn on 127.0.0.1, in every request form:
automatic mask, face budget, textured GLB, USDZ. Outputs are read back with trimesh,
pygltflib, Pillow, USD and (when Node has it) the Khronos glTF validator."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pygltflib
import pytest
import requests
import trimesh
from gen3d_testing import b64, glb_json, png_bytes, tiny_onnx_segmenter
from PIL import Image
from skimage import data

ATTRS = "X-Amzn-SageMaker-Custom-Attributes"
COFFEE_JPEG = png_bytes(data.coffee(), "JPEG")  # scikit-image's CC0 photo, 600x400


@pytest.fixture(scope="module")
def server(server_stopper):
    from gen3d.serve.local_server import start_server

    srv = start_server(env={"GEN3D_MAX_IMAGE_PIXELS": "1000000"})
    srv.wait_ready(60)
    yield srv
    server_stopper.stop(srv)


def post(server, body, content_type="image/jpeg", **headers) -> requests.Response:
    return requests.post(
        server.url + "/invocations",
        data=body,
        headers={"Content-Type": content_type, **headers},
        timeout=120,
    )


def load_glb(payload: bytes) -> trimesh.Trimesh:
    return trimesh.load(io.BytesIO(payload), file_type="glb", force="mesh")


def test_photo_only_jpeg_gives_a_glb_with_the_mask_source(server) -> None:
    response = post(server, COFFEE_JPEG)
    assert response.status_code == 200, response.text
    assert load_glb(response.content).is_watertight
    assert glb_json(response.content)["asset"]["extras"]["mask_source"] == "grabcut"
    assert json.loads(response.headers["X-Gen3D-Metadata"])["mask_source"] == "grabcut"


def test_mask_required_keeps_the_old_422(server) -> None:
    for response in (
        post(server, COFFEE_JPEG, **{ATTRS: "mask=required"}),
        post(
            server,
            json.dumps({"image": b64(COFFEE_JPEG), "options": {"mask": "required"}}),
            "application/json",
        ),
    ):
        assert response.status_code == 422
        assert "mask is required" in response.json()["error"]["message"]


def test_blank_photo_is_a_clear_422(server) -> None:
    response = post(server, png_bytes(np.full((200, 300, 3), 128, np.uint8), "JPEG"))
    assert response.status_code == 422
    assert "one flat colour" in response.json()["error"]["message"]


def test_json_answer_carries_the_mask_used_as_png(server) -> None:
    body = json.dumps({"image": b64(COFFEE_JPEG)})
    response = post(server, body, "application/json", Accept="application/json")
    assert response.status_code == 200
    answer = response.json()
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["mask"]))))
    assert mask.shape == (400, 600) and set(np.unique(mask)) == {0, 255}
    assert answer["metadata"]["mask_source"] == "grabcut"


def _faces_request(server, form: str, value) -> requests.Response:
    if form == "json":
        body = {"image": b64(COFFEE_JPEG), "options": {"target_faces": value}}
        return post(server, json.dumps(body), "application/json", Accept="model/gltf-binary")
    if form == "multipart":
        return requests.post(
            server.url + "/invocations",
            files={"image": ("c.jpg", COFFEE_JPEG)},
            data={"options": json.dumps({"target_faces": value})},
            timeout=120,
        )
    return post(server, COFFEE_JPEG, **{ATTRS: f"target_faces={value}"})


@pytest.mark.parametrize("form", ["json", "multipart", "attributes"])
def test_target_faces_caps_faces_and_keeps_the_solid_closed(server, form) -> None:
    response = _faces_request(server, form, 2000)
    assert response.status_code == 200, response.text
    mesh = load_glb(response.content)
    assert len(mesh.faces) <= 2000 and mesh.is_watertight
    extras = glb_json(response.content)["asset"]["extras"]
    assert extras["faces_after"] == len(mesh.faces) < extras["faces_before"]


@pytest.mark.parametrize("form", ["json", "multipart", "attributes"])
@pytest.mark.parametrize("value", [10, 500_000])
def test_target_faces_out_of_range_is_400_naming_the_field(server, form, value) -> None:
    response = _faces_request(server, form, value)
    assert response.status_code == 400
    assert "target_faces" in response.json()["error"]["message"]


# `make setup` installs the validator here when npm is present (Makefile).
VALIDATOR_MODULES = Path(__file__).resolve().parents[2] / ".venv" / "node" / "node_modules"


def _validator_env() -> dict[str, str] | None:
    """NODE_PATH under which Node loads the Khronos glTF validator, or None."""
    node = shutil.which("node")
    if node is None:
        return None
    paths = [str(VALIDATOR_MODULES), *filter(None, [os.environ.get("NODE_PATH")])]
    env = {"NODE_PATH": os.pathsep.join(paths)}
    found = subprocess.run(
        [node, "-e", "require.resolve('gltf-validator')"],
        capture_output=True,
        env=env,
        check=False,
    )
    return env if found.returncode == 0 else None


VALIDATE_JS = """
const v = require('gltf-validator');
const bytes = new Uint8Array(require('fs').readFileSync(process.argv[2]));
v.validateBytes(bytes).then(r => console.log(JSON.stringify(r.issues)));
"""


@pytest.mark.parametrize("size", [512, 2048])
def test_texture_image_gives_one_texture_of_the_asked_size(server, size, tmp_path) -> None:
    options = {"texture": "image", "texture_size": size, "target_faces": 5000}
    body = json.dumps({"image": b64(COFFEE_JPEG), "options": options})
    response = post(server, body, "application/json", Accept="model/gltf-binary")
    assert response.status_code == 200, response.text
    gltf = pygltflib.GLTF2.load_from_bytes(response.content)
    assert len(gltf.textures) == 1 and len(gltf.images) == 1
    material = gltf.materials[gltf.meshes[0].primitives[0].material]
    assert material.pbrMetallicRoughness.baseColorTexture.index == 0
    blob = gltf.binary_blob()
    view = gltf.bufferViews[gltf.images[0].bufferView]
    picture = Image.open(io.BytesIO(blob[view.byteOffset : view.byteOffset + view.byteLength]))
    assert picture.size == (size, size) and picture.format == "JPEG"
    accessor = gltf.accessors[gltf.meshes[0].primitives[0].attributes.TEXCOORD_0]
    uv_view = gltf.bufferViews[accessor.bufferView]
    uv = np.frombuffer(blob, np.float32, accessor.count * 2, uv_view.byteOffset)
    assert 0.0 <= uv.min() and uv.max() <= 1.0
    assert load_glb(response.content).is_watertight
    env = _validator_env()
    if env is None:  # no Node or no validator: the structural checks above stand
        return
    path = tmp_path / "textured.glb"
    path.write_bytes(response.content)
    script = tmp_path / "validate.js"
    script.write_text(VALIDATE_JS)
    run = subprocess.run(
        [shutil.which("node"), str(script), str(path)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    issues = json.loads(run.stdout)
    assert issues["numErrors"] == 0, issues["messages"]


@pytest.mark.parametrize(("field", "value"), [("texture", "uv"), ("texture_size", 4096)])
def test_texture_options_out_of_range_are_400(server, field, value) -> None:
    body = json.dumps({"image": b64(COFFEE_JPEG), "options": {field: value}})
    response = post(server, body, "application/json")
    assert response.status_code == 400 and field in response.json()["error"]["message"]


def _usd_validation_errors(stage) -> list[str]:
    """Every Error from USD's own registered validators (usdz packaging, shading, ...)."""
    from pxr import UsdValidation

    validators = UsdValidation.ValidationRegistry().GetOrLoadAllValidators()
    found = UsdValidation.ValidationContext(validators).Validate(stage)
    return [e.GetMessage() for e in found if e.GetType() == UsdValidation.ValidationErrorType.Error]


@pytest.mark.slow  # USD export per option
@pytest.mark.parametrize("options", [{}, {"texture": "image", "texture_size": 512}])
def test_usdz_holds_one_mesh_with_the_glb_vertex_count(server, tmp_path, options) -> None:
    pytest.importorskip("pxr")
    from pxr import Usd, UsdGeom

    body = {"image": b64(COFFEE_JPEG), "options": options}
    glb = post(server, json.dumps(body), "application/json", Accept="model/gltf-binary")
    response = post(server, json.dumps(body), "application/json", Accept="model/vnd.usdz+zip")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "model/vnd.usdz+zip"
    path = tmp_path / "object.usdz"
    path.write_bytes(response.content)
    stage = Usd.Stage.Open(str(path))
    meshes = [UsdGeom.Mesh(p) for p in stage.Traverse() if p.IsA(UsdGeom.Mesh)]
    assert len(meshes) == 1
    count = len(meshes[0].GetPointsAttr().Get())
    gltf = pygltflib.GLTF2.load_from_bytes(glb.content)
    assert count == gltf.accessors[gltf.meshes[0].primitives[0].attributes.POSITION].count
    assert _usd_validation_errors(stage) == []
    packaged = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    if options:  # the photo texture travels inside the package, on st coordinates
        assert any(name.endswith(".jpg") for name in packaged)
        st = UsdGeom.PrimvarsAPI(meshes[0]).GetPrimvar("st").Get()
        assert len(st) == count and 0.0 <= min(min(v) for v in st) <= max(max(v) for v in st) <= 1
    else:
        assert packaged == ["object.usdc"]


def test_usdz_without_the_extra_is_406_with_the_reason(start_gen3d_server, tmp_path) -> None:
    # A `pxr` that fails to import shadows usd-core: the server as if the extra were absent.
    shadow = tmp_path / "shadow" / "pxr"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('usd-core is not installed')\n")
    server = start_gen3d_server(env={"PYTHONPATH": str(shadow.parent)})
    response = post(server, COFFEE_JPEG, Accept="model/vnd.usdz+zip")
    assert response.status_code == 406
    assert "gen3d[usd]" in response.json()["error"]["message"]
    asked = post(server, COFFEE_JPEG, **{ATTRS: "format=usdz"})
    assert asked.status_code == 406 and "gen3d[usd]" in asked.json()["error"]["message"]
    fallback = post(server, COFFEE_JPEG, Accept="model/vnd.usdz+zip, model/gltf-binary;q=0.5")
    assert fallback.status_code == 200
    assert fallback.headers["Content-Type"] == "model/gltf-binary"


def test_the_artifacts_segmenter_makes_the_mask(start_gen3d_server, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    tiny_onnx_segmenter(model_dir / "segmenter.onnx", 128)
    server = start_gen3d_server(env={"GEN3D_MODEL_DIR": str(model_dir)})
    photo = np.zeros((120, 160, 3), np.uint8)
    photo[30:90, 50:110] = 255  # white is object for the tiny graph
    response = post(server, png_bytes(photo), "image/png", Accept="application/json")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["metadata"]["mask_source"] == "onnx"
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["mask"])))) > 0
    assert abs(int(mask.sum()) - 60 * 60) < 0.15 * 60 * 60
