"""Request decoding and response encoding (docs/architecture.md), one table per direction.

Codecs turn bytes into Samples and Assets into bytes; they never see tensors.
Images are size-checked from their header before any pixel is decoded.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import json
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from gen3d.serve import request_options
from gen3d.serve.backends.base import Sample
from gen3d.serve.errors import (
    BadRequest,
    Gen3DError,
    NotAcceptable,
    PayloadTooLarge,
    Unprocessable,
)
from gen3d.serve.outputs import usdz
from gen3d.serve.outputs.assets import Asset
from gen3d.serve.outputs.encoding import FORMATS, encode_asset

MAX_SEED = 2**32 - 1
# We refuse oversize images ourselves from the header (GEN3D_MAX_IMAGE_PIXELS), before
# any pixel is decoded, with a message that gives the size; PIL's global guard is off.
Image.MAX_IMAGE_PIXELS = None


# The image formats a request may carry, by Content-Type (Pillow format names). Nothing
# else is ever parsed: Pillow's other plugins (EPS reaches Ghostscript; DDS, SPIDER, IM
# parse untrusted headers) are attack surface we do not need.
WEB_FORMATS = ("PNG", "JPEG", "WEBP")
FORMATS_BY_TYPE = {
    "image/png": ("PNG",),
    "image/jpeg": ("JPEG",),
    "image/webp": ("WEBP",),
    "application/x-image": WEB_FORMATS,
}
MAX_INT_DIGITS = 64  # longer JSON integers are not parsed (Python refuses > 4300 anyway)
# A client's JSON: no request needs more than a few levels (a batch of instances holding
# options); the multipart 'options' field is a small object.
MAX_JSON_DEPTH = 16
MAX_OPTIONS_BYTES = 64 * 1024


@dataclass(frozen=True)
class Limits:
    max_image_pixels: int
    max_batch_items: int
    needs_mask: bool
    options: frozenset[str]
    max_side: int = 0  # larger images are reduced to this long side while decoding; 0: never
    # Makes a mask for a photo-only request: photo -> (mask, source); None: refuse (422).
    auto_mask: Callable[[np.ndarray], tuple[np.ndarray, str]] | None = None


@dataclass(frozen=True)
class DecodedRequest:
    items: list[Sample | Gen3DError]  # a bad batch item is an error in its slot
    is_batch: bool
    requested_format: str | None = None  # explicit format of a single request, if any


# ---------------------------------------------------------------- custom attributes


def parse_custom_attributes(header: str | None) -> dict[str, str]:
    """`seed=7,format=ply` -> {"seed": "7", "format": "ply"}; entries without '=' are kept
    as flags with an empty value. The raw header is echoed back unchanged by the app."""
    out: dict[str, str] = {}
    for part in (header or "").split(","):
        key, _, value = part.partition("=")
        if key.strip():
            out[key.strip().lower()] = value.strip()
    return out


# ---------------------------------------------------------------- images


@dataclass(frozen=True)
class DecodedImage:
    pixels: Image.Image  # loaded, upright (EXIF orientation applied), maybe reduced
    size: tuple[int, int]  # width, height as displayed, before any reduction


def _open_image(
    data: bytes, what: str, limits: Limits, formats: tuple[str, ...] = WEB_FORMATS
) -> DecodedImage:
    """Open as one of `formats`, refuse oversize images from the header, then decode:
    a JPEG at the smallest DCT scale that still covers `limits.max_side`, everything
    reduced to `max_side` right after decoding, EXIF orientation applied."""
    try:
        image = Image.open(io.BytesIO(data), formats=list(formats))
        width, height = image.size
    except Exception:  # Pillow raises many types on hostile headers; none is ours to show
        names = " or ".join(formats)
        raise BadRequest(f"{what} is not a decodable {names} image") from None
    if width == 0 or height == 0:
        raise BadRequest(f"{what} has no pixels")
    side = limits.max_side
    try:
        if side and max(width, height) > side and image.format == "JPEG":
            scale = side / max(width, height)
            image.draft(image.mode, (max(1, int(width * scale)), max(1, int(height * scale))))
    except Exception:
        raise BadRequest(f"{what} could not be decoded (a corrupt or truncated file)") from None
    # The limit is on the pixels decoded: a JPEG drafted at a smaller DCT scale (a 24 MP
    # photo at 1/2) fits where its full size would not; still from the header alone.
    if image.size[0] * image.size[1] > limits.max_image_pixels:
        shown = (
            "" if image.size == (width, height) else f" ({image.size[0]}x{image.size[1]} reduced)"
        )
        raise PayloadTooLarge(
            f"{what} is {width}x{height} = {width * height} pixels{shown}; "
            f"the limit is {limits.max_image_pixels} (GEN3D_MAX_IMAGE_PIXELS)"
        )
    try:
        image.load()
        displayed = _displayed_size(image, (width, height))
        if side and max(image.size) > side:
            image.thumbnail((side, side), Image.Resampling.BILINEAR)  # in place
        ImageOps.exif_transpose(image, in_place=True)  # no copy when already upright
    except Exception:
        raise BadRequest(f"{what} could not be decoded (a corrupt or truncated file)") from None
    return DecodedImage(image, displayed)


def _displayed_size(image: Image.Image, size: tuple[int, int]) -> tuple[int, int]:
    """The size a viewer shows: width and height swap for EXIF orientations 5-8."""
    orientation = image.getexif().get(0x0112, 1)
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )


def decode_photo(
    data: bytes, limits: Limits, formats: tuple[str, ...] = WEB_FORMATS
) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int]]:
    """Photo bytes -> (RGB uint8, mask from the alpha channel or None, displayed size)."""
    decoded = _open_image(data, "image", limits, formats)
    image = decoded.pixels
    if _has_alpha(image):
        rgba = np.asarray(image.convert("RGBA"))
        return np.ascontiguousarray(rgba[:, :, :3]), rgba[:, :, 3] >= 128, decoded.size
    return np.asarray(image.convert("RGB")), None, decoded.size


def decode_mask(
    data: bytes, limits: Limits, shape: tuple[int, int] | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """Mask bytes -> (bool (H, W), displayed size): the alpha channel if it has one, else
    grey >= 128; resized to `shape` (the photo's decoded height and width) if given."""
    decoded = _open_image(data, "mask", limits)
    image = decoded.pixels
    grey = image.convert("RGBA").getchannel("A") if _has_alpha(image) else image.convert("L")
    if shape is not None and grey.size != (shape[1], shape[0]):
        grey = grey.resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(grey) >= 128, decoded.size


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise BadRequest(f"{what} must be a base64 string")
    if value.startswith("data:"):  # tolerate data URLs
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{what} is not valid base64") from None


# ---------------------------------------------------------------- samples


def _seed(value: Any) -> int:
    return request_options.client_int(value, "seed", (0, MAX_SEED), Unprocessable)


def _format(value: Any) -> str:
    if value is None:
        return "glb"
    if not isinstance(value, str) or value.lower() not in FORMATS:
        raise Unprocessable(f"format must be one of {', '.join(FORMATS)}")
    if value.lower() == "usdz" and not usdz.available():
        raise NotAcceptable(usdz.MISSING)
    return value.lower()


def build_sample(
    photo: bytes,
    mask_bytes: bytes | None,
    *,
    seed: Any,
    fmt: Any,
    options: Any,
    limits: Limits,
    formats: tuple[str, ...] = WEB_FORMATS,
) -> Sample:
    image, mask, photo_size = decode_photo(photo, limits, formats)
    mask_source = "alpha" if mask is not None else None
    if mask_bytes is not None:
        mask, mask_size = decode_mask(mask_bytes, limits, image.shape[:2])
        mask_source = "request"
        if mask_size != photo_size:
            raise Unprocessable(
                f"mask is {mask_size[0]}x{mask_size[1]} but the image is "
                f"{photo_size[0]}x{photo_size[1]} (as displayed, EXIF orientation applied)"
            )
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise Unprocessable("options must be an object")
    unknown = sorted(set(options) - limits.options)
    if unknown:
        allowed = ", ".join(sorted(limits.options)) or "none"
        raise Unprocessable(f"unknown option(s) {', '.join(unknown)}; allowed: {allowed}")
    policy = request_options.parse(options).mask
    seed, fmt = _seed(seed), _format(fmt)  # checked before any mask work
    if mask is None and limits.needs_mask:
        if policy == "required" or limits.auto_mask is None:
            raise Unprocessable(
                "a mask is required: send an RGBA PNG whose alpha is the mask, a 'mask' "
                "part, or a 'mask' field"
                + ("" if policy == "required" else " (this server makes no automatic mask)")
            )
        mask, mask_source = limits.auto_mask(image)
    if mask is not None:
        if mask.shape != image.shape[:2]:
            raise Unprocessable(
                f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                f"{image.shape[1]}x{image.shape[0]}"
            )
        if not mask.any():
            raise Unprocessable("the mask is empty: no pixel marks the object")
    return Sample(
        image=image,
        mask=mask,
        seed=seed,
        format=fmt,
        options=dict(options),
        mask_source=mask_source,
    )


@dataclass(frozen=True)
class Defaults:
    """Per-request defaults from custom attributes and the Accept header."""

    seed: Any = 0
    format: str | None = None  # None: not asked for; the Accept header may decide
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # from attributes


def _with_defaults(options: Any, defaults: Defaults) -> Any:
    """A request's options over the custom attributes' (the body wins)."""
    if not defaults.options or (options is not None and not isinstance(options, Mapping)):
        return options
    return {**defaults.options, **(options or {})}


def _json_item(item: Any, defaults: Defaults, limits: Limits) -> Sample:
    if not isinstance(item, Mapping):
        raise BadRequest("each instance must be a JSON object")
    if "image" not in item:
        raise BadRequest("missing field 'image' (base64)")
    mask = _b64(item["mask"], "mask") if item.get("mask") is not None else None
    return build_sample(
        _b64(item["image"], "image"),
        mask,
        seed=item.get("seed", defaults.seed),
        fmt=item.get("format", defaults.format),
        options=_with_defaults(item.get("options"), defaults),
        limits=limits,
    )


def _items(raw: list[Any], defaults: Defaults, limits: Limits) -> list[Sample | Gen3DError]:
    if not raw:
        raise Unprocessable("the batch is empty")
    if len(raw) > limits.max_batch_items:
        raise PayloadTooLarge(
            f"the batch has {len(raw)} items; the limit is {limits.max_batch_items} "
            "(GEN3D_MAX_BATCH_ITEMS)"
        )
    out: list[Sample | Gen3DError] = []
    for entry in raw:
        try:
            out.append(_json_item(entry, defaults, limits))
        except Gen3DError as exc:
            out.append(exc)
    return out


class _TooLong:
    """A JSON integer too long to be anything we accept (a seed has 10 digits)."""

    def __repr__(self) -> str:
        return f"(an integer of over {MAX_INT_DIGITS} digits)"


def _bounded_int(text: str) -> int | _TooLong:
    return int(text) if len(text) <= MAX_INT_DIGITS else _TooLong()


def _deeper_than(doc: Any, limit: int) -> bool:
    """Whether `doc` nests lists and objects more than `limit` levels (no recursion)."""
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def read_client_json(data: bytes | str, what: str, max_bytes: int | None) -> Any:
    """The one reader of JSON a client sent: at most `max_bytes` (None: the body limit
    already bounded it), at most MAX_JSON_DEPTH levels deep, integers of at most
    MAX_INT_DIGITS digits. Anything else is the client's 400 (413 over the size)."""
    if max_bytes is not None and len(data) > max_bytes:
        raise PayloadTooLarge(f"{what} is over {max_bytes} bytes")
    try:
        doc = json.loads(data, parse_int=_bounded_int)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:  # Python's own nesting limit, met before ours can be checked
        raise BadRequest(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep") from None
    if isinstance(doc, dict | list) and _deeper_than(doc, MAX_JSON_DEPTH):
        raise BadRequest(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep")
    return doc


def decode_json(body: bytes, defaults: Defaults, limits: Limits) -> DecodedRequest:
    doc = read_client_json(body, "the JSON body", None)  # the body limit bounds its size
    if not isinstance(doc, Mapping):
        raise BadRequest("the JSON body must be an object")
    if "instances" in doc:
        if not isinstance(doc["instances"], list):
            raise BadRequest("'instances' must be a list")
        return DecodedRequest(_items(doc["instances"], defaults, limits), is_batch=True)
    if "images" in doc:  # the seed-era form: parallel lists
        images, masks = doc["images"], doc.get("masks")
        if not isinstance(images, list) or (masks is not None and not isinstance(masks, list)):
            raise BadRequest("'images' and 'masks' must be lists")
        if masks is not None and len(masks) != len(images):
            raise Unprocessable(f"{len(images)} images but {len(masks)} masks")
        raw = [{"image": im, "mask": masks[i] if masks else None} for i, im in enumerate(images)]
        return DecodedRequest(_items(raw, defaults, limits), is_batch=True)
    sample = _json_item(doc, defaults, limits)
    return DecodedRequest([sample], False, _explicit(doc.get("format", defaults.format)))


def _explicit(fmt: Any) -> str | None:
    return None if fmt is None else _format(fmt)


def decode_multipart(
    files: Mapping[str, bytes], fields: Mapping[str, str], defaults: Defaults, limits: Limits
) -> DecodedRequest:
    if "image" not in files:
        raise BadRequest("multipart body needs an 'image' part")
    options: Any = None
    if "options" in fields:
        options = read_client_json(fields["options"], "the 'options' part", MAX_OPTIONS_BYTES)
    sample = build_sample(
        files["image"],
        files.get("mask"),
        seed=fields.get("seed", defaults.seed),
        fmt=fields.get("format", defaults.format),
        options=_with_defaults(options, defaults),
        limits=limits,
    )
    return DecodedRequest([sample], False, _explicit(fields.get("format", defaults.format)))


IMAGE_TYPES = tuple(FORMATS_BY_TYPE)


def decode_image_body(
    body: bytes, defaults: Defaults, limits: Limits, content_type: str = "application/x-image"
) -> DecodedRequest:
    sample = build_sample(
        body,
        None,
        seed=defaults.seed,
        fmt=defaults.format,
        options=_with_defaults(None, defaults),
        limits=limits,
        formats=FORMATS_BY_TYPE.get(content_type, WEB_FORMATS),
    )
    return DecodedRequest([sample], False, _explicit(defaults.format))


def media_type(header: str | None) -> str:
    return (header or "").split(";")[0].strip().lower()


# ---------------------------------------------------------------- responses

FORMAT_MEDIA_TYPE = {
    "glb": "model/gltf-binary",
    "ply": "application/ply",
    "obj": "model/obj",
    "usdz": usdz.MEDIA_TYPE,
}
MEDIA_TYPE_FORMAT = {media: fmt for fmt, media in FORMAT_MEDIA_TYPE.items()}
BATCH_MEDIA_TYPES = ("application/json", "application/zip")
OCTET_STREAM = "application/octet-stream"  # a binary asset; PLY unless a format is asked


@dataclass(frozen=True)
class ResponsePlan:
    wire: str  # binary | json | zip
    media_type: str
    format: str | None  # forced format for every item, or None to keep each item's own


def plan_response(accept: str | None, requested: str | None, is_batch: bool) -> ResponsePlan:
    """Pick what to send back by content negotiation (werkzeug's MIMEAccept: highest q,
    then the most specific match, then our order of preference); 406 when Accept names
    nothing this request can produce."""
    accepted = parse_accept_header(accept or "*/*", MIMEAccept)
    if is_batch:
        chosen = accepted.best_match(BATCH_MEDIA_TYPES)
        if chosen is None:
            raise NotAcceptable(
                f"cannot produce {accept!r}; a batch can return {', '.join(BATCH_MEDIA_TYPES)}"
            )
        return ResponsePlan("json" if chosen == "application/json" else "zip", chosen, None)
    binary = [FORMAT_MEDIA_TYPE[requested]] if requested else list(FORMAT_MEDIA_TYPE.values())
    if not usdz.available():  # the optional extra is absent: never offered
        binary = [media for media in binary if media != usdz.MEDIA_TYPE]
    offered = [*binary, OCTET_STREAM, "application/json"]
    chosen = accepted.best_match(offered)
    if chosen is None and accepted[usdz.MEDIA_TYPE] and not usdz.available():
        raise NotAcceptable(usdz.MISSING)
    if chosen is None:
        raise NotAcceptable(
            f"cannot produce {accept!r}; this request can return {', '.join(offered)}"
        )
    if chosen == "application/json":
        return ResponsePlan("json", chosen, requested or "glb")
    if chosen == OCTET_STREAM:
        return ResponsePlan("binary", chosen, requested or "ply")
    return ResponsePlan("binary", chosen, MEDIA_TYPE_FORMAT[chosen])


def encode_item(asset: Asset, fmt: str) -> bytes:
    """Serialise one result; a result that lacks what `fmt` needs is the client's 422."""
    try:
        return encode_asset(asset, fmt)
    except ValueError as exc:
        raise Unprocessable(str(exc)) from None


def asset_json(asset: Asset, fmt: str) -> dict[str, Any]:
    """One result as a JSON document: {"format", "data" (base64), "metadata"[, "mask"]}."""
    data = encode_item(asset, fmt)
    body = {"format": fmt, "data": base64.b64encode(data).decode(), "metadata": asset.metadata}
    if asset.mask is not None:  # the mask used, so clients can show it (PNG, white = object)
        body["mask"] = base64.b64encode(mask_png(asset.mask)).decode()
    return body


@dataclass(frozen=True)
class EncodedItem:
    """One result as it goes on the wire: `data` is the asset file (binary and zip
    answers) or its JSON document (JSON answers), per the plan it was encoded for."""

    data: bytes
    format: str
    metadata: dict[str, Any]


def encode_result(asset: Asset, fmt: str, plan: ResponsePlan) -> EncodedItem:
    """Encode one result for `plan`; a result that lacks what `fmt` needs is a 422."""
    data = asset_json_bytes(asset, fmt) if plan.wire == "json" else encode_item(asset, fmt)
    return EncodedItem(data, fmt, asset.metadata)


def asset_json_bytes(asset: Asset, fmt: str) -> bytes:
    """`json.dumps(asset_json(asset, fmt)).encode()`, byte for byte, without json's pass
    over the base64 payloads: base64 is ASCII that JSON never escapes, and on a 1.5 MB
    mesh that pass plus two copies cost about 3 ms of CPU per answer (issue 12)."""
    data = base64.b64encode(encode_item(asset, fmt))
    parts = [
        b'{"format": ',
        json.dumps(fmt).encode(),
        b', "data": "',
        data,
        b'", "metadata": ',
        json.dumps(asset.metadata).encode(),
    ]
    if asset.mask is not None:
        parts += [b', "mask": "', base64.b64encode(mask_png(asset.mask)), b'"']
    parts.append(b"}")
    return b"".join(parts)


def mask_png(mask: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def encode_batch(
    items: list[EncodedItem | Gen3DError],
    plan: ResponsePlan,
    error_body: Callable[[Gen3DError], dict[str, Any]],
) -> bytes:
    """Batch results in request order: JSON predictions, or a zip with a manifest."""
    if plan.wire == "json":
        predictions = [
            json.dumps(error_body(item)).encode() if isinstance(item, Gen3DError) else item.data
            for item in items
        ]
        return b'{"predictions": [' + b", ".join(predictions) + b"]}"
    buffer = io.BytesIO()
    manifest = []
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for index, item in enumerate(items):
            if isinstance(item, Gen3DError):
                name = f"{index:04d}.error.json"
                archive.writestr(name, json.dumps(error_body(item)))
                manifest.append({"index": index, "file": name, "error": error_body(item)})
            else:
                name = f"{index:04d}.{item.format}"
                archive.writestr(name, item.data)
                manifest.append({"index": index, "file": name, "metadata": item.metadata})
        archive.writestr("manifest.json", json.dumps({"predictions": manifest}, indent=1))
    return buffer.getvalue()
