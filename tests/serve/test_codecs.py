import dataclasses
import io
import json
import zipfile

import numpy as np
import pytest
from gen3d_testing import b64, json_instance, photo_and_mask, png_bytes, rgba_png

from gen3d.serve.backends.base import synthetic_sample
from gen3d.serve.backends.silhouette import SilhouetteBackend
from gen3d.serve.errors import (
    BadRequest,
    NotAcceptable,
    PayloadTooLarge,
    Unprocessable,
)
from gen3d.serve.http import codecs
from gen3d.serve.outputs.assets import Asset

LIMITS = codecs.Limits(
    max_image_pixels=512 * 512,
    max_batch_items=4,
    needs_mask=True,
    options=frozenset({"resolution"}),
)
D = codecs.Defaults()


def test_custom_attributes_parse() -> None:
    assert codecs.parse_custom_attributes("seed=7, format=ply,trace") == {
        "seed": "7",
        "format": "ply",
        "trace": "",
    }
    assert codecs.parse_custom_attributes(None) == {}


def test_rgba_png_alpha_is_the_mask() -> None:
    decoded = codecs.decode_image_body(rgba_png(64), D, LIMITS)
    image, mask = photo_and_mask(64)
    sample = decoded.items[0]
    assert not decoded.is_batch
    assert np.array_equal(sample.image, image) and np.array_equal(sample.mask, mask)
    assert sample.format == "glb" and decoded.requested_format is None


def test_photo_without_mask_is_422_when_the_backend_needs_one() -> None:
    image, _ = photo_and_mask(32)
    with pytest.raises(Unprocessable, match="mask is required"):
        codecs.decode_image_body(png_bytes(image, "JPEG"), D, LIMITS)


def test_json_single_and_defaults_from_custom_attributes() -> None:
    body = json.dumps(json_instance(48)).encode()
    decoded = codecs.decode_json(body, codecs.Defaults(seed="9", format="ply"), LIMITS)
    assert decoded.items[0].seed == 9 and decoded.items[0].format == "ply"
    assert decoded.requested_format == "ply"


def test_batch_keeps_good_items_and_reports_bad_ones_in_place() -> None:
    good = json_instance(40, seed=1)
    empty = json_instance(40)
    empty["mask"] = b64(png_bytes(np.zeros((40, 40), np.uint8)))
    body = json.dumps({"instances": [good, {"image": "%%%"}, empty, good]}).encode()
    items = codecs.decode_json(body, D, LIMITS).items
    assert [type(i).__name__ for i in items] == ["Sample", "BadRequest", "Unprocessable", "Sample"]


def test_seed_era_batch_form() -> None:
    a, b = json_instance(32), json_instance(32, seed=2)
    body = json.dumps({"images": [a["image"], b["image"]], "masks": [a["mask"], b["mask"]]})
    decoded = codecs.decode_json(body.encode(), D, LIMITS)
    assert decoded.is_batch and len(decoded.items) == 2
    with pytest.raises(Unprocessable, match="2 images but 1 masks"):
        codecs.decode_json(
            json.dumps({"images": [a["image"]] * 2, "masks": [a["mask"]]}).encode(), D, LIMITS
        )


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", BadRequest),
        (b"[1, 2]", BadRequest),
        (json.dumps({"image": "not base64!"}).encode(), BadRequest),
        (json.dumps({"image": b64(b"definitely not an image")}).encode(), BadRequest),
        (json.dumps({"instances": []}).encode(), Unprocessable),
        (json.dumps({"instances": [json_instance(8)] * 5}).encode(), PayloadTooLarge),
        (json.dumps(json_instance(16, format="fbx")).encode(), Unprocessable),
        (json.dumps({**json_instance(16), "seed": -1}).encode(), Unprocessable),
        (json.dumps(json_instance(16, options={"colour": 1})).encode(), Unprocessable),
    ],
)
def test_json_errors(body: bytes, error: type) -> None:
    with pytest.raises(error):
        codecs.decode_json(body, D, LIMITS)


def test_mask_size_mismatch_is_422() -> None:
    item = json_instance(32)
    item["mask"] = b64(png_bytes(np.ones((16, 16), np.uint8) * 255))
    with pytest.raises(Unprocessable, match="mask is 16x16 but the image is 32x32"):
        codecs.decode_json(json.dumps(item).encode(), D, LIMITS)


def test_decompression_bomb_is_refused_from_the_header() -> None:
    # 12000 x 12000 of zeros compresses to ~140 kB; decoding would take 144 MB.
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (12000, 12000)).save(buffer, "PNG")
    with pytest.raises(PayloadTooLarge, match="12000x12000"):
        codecs.decode_image_body(buffer.getvalue(), D, LIMITS)


@pytest.mark.parametrize(
    ("accept", "requested", "batch", "expected"),
    [
        (None, None, False, ("binary", "model/gltf-binary", "glb")),
        ("application/ply", None, False, ("binary", "application/ply", "ply")),
        ("application/octet-stream", None, False, ("binary", "application/octet-stream", "ply")),
        ("application/json", "obj", False, ("json", "application/json", "obj")),
        ("text/html, model/obj;q=0.5", None, False, ("binary", "model/obj", "obj")),
        ("*/*", "ply", False, ("binary", "application/ply", "ply")),
        (None, None, True, ("json", "application/json", None)),
        ("application/zip", None, True, ("zip", "application/zip", None)),
    ],
)
def test_accept_negotiation(accept, requested, batch, expected) -> None:
    plan = codecs.plan_response(accept, requested, batch)
    assert (plan.wire, plan.media_type, plan.format) == expected


@pytest.mark.parametrize(
    ("accept", "requested", "batch"),
    [
        ("text/html", None, False),
        ("model/gltf-binary", "ply", False),
        ("model/obj", None, True),
        ("model/obj;q=0", None, False),
    ],
)
def test_not_acceptable(accept, requested, batch) -> None:
    with pytest.raises(NotAcceptable):
        codecs.plan_response(accept, requested, batch)


def test_zip_batch_has_files_errors_and_a_manifest() -> None:
    backend = SilhouetteBackend()
    asset = backend.predict([synthetic_sample(48, fmt="ply")])[0]
    assert isinstance(asset, Asset)
    plan = codecs.plan_response("application/zip", None, True)
    items = [
        codecs.encode_result(asset, "glb", plan),
        Unprocessable("nope"),
        codecs.encode_result(asset, "ply", plan),
    ]
    body = codecs.encode_batch(items, plan, lambda e: e.to_dict("r1"))
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert sorted(archive.namelist()) == [
        "0000.glb",
        "0001.error.json",
        "0002.ply",
        "manifest.json",
    ]
    assert archive.read("0000.glb")[:4] == b"glTF"
    assert archive.read("0002.ply").startswith(b"ply\n")
    error = json.loads(archive.read("0001.error.json"))["error"]
    assert error == {"code": "unprocessable", "message": "nope", "request_id": "r1"}


@pytest.mark.parametrize("with_mask", [True, False])
def test_json_answers_are_what_json_dumps_writes_byte_for_byte(with_mask: bool) -> None:
    """The fast path skips json's escaping pass over base64 only: same document, same
    bytes (non-ASCII metadata still escaped as json.dumps does)."""
    sample = synthetic_sample(48)
    asset = SilhouetteBackend().predict([sample])[0]
    asset.metadata["note"] = 'café "quoted" \\ back'
    asset.mask = sample.mask if with_mask else None
    expected = json.dumps(codecs.asset_json(asset, "glb")).encode()
    assert codecs.asset_json_bytes(asset, "glb") == expected
    plan = codecs.plan_response("application/json", None, True)
    error = Unprocessable("nope")
    body = codecs.encode_batch(
        [codecs.encode_result(asset, "glb", plan), error], plan, lambda e: e.to_dict("r1")
    )
    predictions = [codecs.asset_json(asset, "glb"), error.to_dict("r1")]
    assert body == json.dumps({"predictions": predictions}).encode()


@pytest.mark.parametrize("value", [2000, "2000", " 2000 ", "0002000"])
def test_the_client_integer_reader_takes_ascii_digits(value) -> None:
    from gen3d.serve.request_options import client_int

    assert client_int(value, "n", (0, 10_000)) == 2000


@pytest.mark.parametrize(
    "value",
    ["\u00b2", "\u0663", "\uff12", "1_000", "+5", "-1", "1e3", "0x10", "9" * 21, "", True, 1.0,
     10_001, None, [5], "20\n00"],
)  # fmt: skip
def test_the_client_integer_reader_refuses_everything_else_as_the_clients_error(value) -> None:
    from gen3d.serve.errors import BadRequest, Unprocessable
    from gen3d.serve.http.request_body import declared_length
    from gen3d.serve.request_options import client_int

    with pytest.raises(BadRequest, match="n must be an integer in"):
        client_int(value, "n", (0, 10_000))
    with pytest.raises(Unprocessable):
        client_int(value, "n", (0, 10_000), Unprocessable)
    if isinstance(value, str) and value.strip():
        with pytest.raises(BadRequest, match="Content-Length"):
            declared_length({"CONTENT_LENGTH": value})


def test_a_24_megapixel_jpeg_is_reduced_while_decoding_not_refused() -> None:
    """The default limits (GEN3D_MAX_IMAGE_PIXELS 4096², GEN3D_MAX_IMAGE_SIDE 2048): a
    6000x4000 phone photo is decoded at half scale and reduced, as the README says; the
    same size as PNG (no smaller decode exists) is still refused from its header."""
    from PIL import Image

    limits = dataclasses.replace(LIMITS, max_image_pixels=4096 * 4096, max_side=2048)
    photo = Image.new("RGB", (6000, 4000), (200, 120, 40))
    jpeg = io.BytesIO()
    photo.save(jpeg, format="JPEG", quality=70)
    rgb, mask, size = codecs.decode_photo(jpeg.getvalue(), limits)
    assert size == (6000, 4000) and mask is None
    assert rgb.shape == (1365, 2048, 3) and abs(int(rgb[..., 0].mean()) - 200) <= 3
    png = io.BytesIO()
    photo.save(png, format="PNG", compress_level=1)
    with pytest.raises(PayloadTooLarge, match="6000x4000 = 24000000 pixels; the limit"):
        codecs.decode_photo(png.getvalue(), limits)
