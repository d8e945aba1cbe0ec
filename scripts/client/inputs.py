"""Inputs to request bodies: a photo (path, bytes, PIL image or numpy array), an optional
mask, a seed, a format and backend options become the container's wire forms
(multipart for one sample, `{"instances": [...]}` JSON for a batch)."""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from urllib3 import encode_multipart_formdata

from gen3d.client.errors import InputError
from gen3d.serve.http.codecs import FORMAT_MEDIA_TYPE, MAX_SEED
from gen3d.serve.outputs.encoding import FORMATS

# The container's own tables (usdz only from servers with the `usd` extra; 406 elsewhere)
SUFFIX = {fmt: "." + fmt for fmt in FORMATS}
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"

ImageLike = Any  # str | os.PathLike | bytes | PIL.Image.Image | numpy.ndarray


def image_bytes(value: ImageLike, what: str = "image") -> bytes:
    """Encoded image bytes for `value`. Paths and bytes go as they are (the server reads
    PNG, JPEG and WebP); PIL images and arrays become PNG. A boolean array is a mask."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str | os.PathLike):
        path = Path(value)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise InputError(f"{what}: no such file: {path}") from None
        except OSError as exc:
            raise InputError(f"{what}: cannot read {path}: {exc.strerror}") from None
    module = type(value).__module__
    if module.startswith("PIL."):
        return _png(value, what)
    if module.startswith("numpy"):
        return _png(_array_image(value, what), what)
    raise InputError(
        f"{what} must be a path, bytes, a PIL image or a numpy array, not {type(value).__name__}"
    )


def _array_image(array: Any, what: str) -> Any:
    import numpy as np
    from PIL import Image

    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise InputError(f"{what} array must be HxW, HxWx3 or HxWx4, not {array.shape}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if array.size and (np.nanmin(array) < 0 or np.nanmax(array) > 1):
            raise InputError(f"{what}: a float array must hold values in [0, 1]")
        array = np.round(np.nan_to_num(array) * 255).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise InputError(f"{what}: array dtype must be uint8, bool or float, not {array.dtype}")
    return Image.fromarray(np.ascontiguousarray(array))


def _png(image: Any, what: str) -> bytes:
    if image.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    buffer = io.BytesIO()
    try:
        image.save(buffer, "PNG")
    except (OSError, ValueError) as exc:
        raise InputError(f"{what}: cannot encode as PNG ({exc})") from None
    return buffer.getvalue()


def check_format(fmt: str) -> str:
    value = str(fmt).lower()
    if value not in FORMATS:
        raise InputError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return value


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"seed must be an integer in [0, {MAX_SEED}], not {seed!r}")
    return seed


@dataclass(frozen=True)
class Item:
    """One sample, encoded: what a single request or one batch instance carries."""

    image: bytes
    mask: bytes | None = None
    seed: int = 0
    format: str = "glb"
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        image: ImageLike,
        mask: ImageLike | None = None,
        *,
        seed: int = 0,
        format: str = "glb",
        options: Mapping[str, Any] | None = None,
    ) -> Item:
        return cls(
            image_bytes(image, "image"),
            None if mask is None else image_bytes(mask, "mask"),
            check_seed(seed),
            check_format(format),
            dict(options or {}),
        )

    @classmethod
    def from_spec(cls, spec: Any, *, seed: int, format: str, options: Mapping[str, Any]) -> Item:
        """An entry of generate_many: an image, an (image, mask) pair, or a mapping with
        image / mask / seed / format / options (missing keys take the call's defaults)."""
        if isinstance(spec, Item):
            return spec
        if isinstance(spec, tuple):
            if len(spec) != 2:
                raise InputError("a tuple item must be (image, mask)")
            return cls.build(spec[0], spec[1], seed=seed, format=format, options=options)
        if isinstance(spec, Mapping):
            if "image" not in spec:
                raise InputError("a mapping item needs an 'image'")
            unknown = set(spec) - {"image", "mask", "seed", "format", "options"}
            if unknown:
                raise InputError(f"unknown item key(s): {', '.join(sorted(unknown))}")
            return cls.build(
                spec["image"],
                spec.get("mask"),
                seed=spec.get("seed", seed),
                format=spec.get("format", format),
                options={**options, **(spec.get("options") or {})},
            )
        return cls.build(spec, None, seed=seed, format=format, options=options)

    def instance(self) -> dict[str, Any]:
        """This sample as one JSON instance (base64 image and mask)."""
        doc: dict[str, Any] = {"image": base64.b64encode(self.image).decode("ascii")}
        if self.mask is not None:
            doc["mask"] = base64.b64encode(self.mask).decode("ascii")
        doc["seed"] = self.seed
        doc["format"] = self.format
        if self.options:
            doc["options"] = dict(self.options)
        return doc

    def json_size(self) -> int:
        """Bytes this item adds to a JSON batch body (base64 is 4/3 of the raw size)."""
        raw = len(self.image) + len(self.mask or b"")
        return 4 * ((raw + 2) // 3) + 64 + len(json.dumps(dict(self.options)))


@dataclass(frozen=True)
class Request:
    """A ready body with its headers."""

    body: bytes
    content_type: str
    accept: str
    custom_attributes: str | None = None

    @property
    def extension(self) -> str:
        """A file suffix for the body when it is stored in S3 (async input)."""
        if self.content_type.startswith("multipart/"):
            return ".multipart"
        return ".json" if self.content_type == "application/json" else ".bin"


def single_request(item: Item, form: str = "multipart") -> Request:
    """One sample as multipart/form-data (binary parts, no base64 growth) or as one JSON
    instance (`form="json"`). A photo without a mask goes alone; the server then reads the
    mask from its alpha channel."""
    attributes = f"seed={item.seed},format={item.format}"
    if form == "json":
        body = json.dumps(item.instance()).encode()
        return Request(body, "application/json", FORMAT_MEDIA_TYPE[item.format], attributes)
    fields: dict[str, Any] = {"image": ("image", item.image, "application/octet-stream")}
    if item.mask is not None:
        fields["mask"] = ("mask", item.mask, "application/octet-stream")
    fields["seed"] = str(item.seed)
    fields["format"] = item.format
    if item.options:
        fields["options"] = json.dumps(dict(item.options))
    body, content_type = encode_multipart_formdata(fields)
    return Request(body, content_type, FORMAT_MEDIA_TYPE[item.format], attributes)


def batch_request(items: list[Item]) -> Request:
    """Several samples as one explicit batch; the answer is JSON predictions in order."""
    body = json.dumps({"instances": [item.instance() for item in items]}).encode()
    return Request(body, "application/json", "application/json")


def split_batches(items: list[Item], max_items: int, max_body_bytes: int) -> list[list[int]]:
    """Indices of `items` in consecutive chunks of at most `max_items` whose JSON body
    stays under `max_body_bytes`. An item too large on its own still gets a chunk: the
    server then refuses it (413) in its own slot and the others go through."""
    chunks: list[list[int]] = []
    current: list[int] = []
    size = len(b'{"instances": []}')
    for index, item in enumerate(items):
        extra = item.json_size() + 2
        if current and (len(current) >= max_items or size + extra > max_body_bytes):
            chunks.append(current)
            current, size = [], len(b'{"instances": []}')
        current.append(index)
        size += extra
    if current:
        chunks.append(current)
    return chunks
