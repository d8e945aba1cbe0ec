"""Options every backend accepts (issue 15): mask policy, face budget, texture.

Parsed once at decode time, so an out-of-range value is the client's 400 naming the
field in every request form (JSON, multipart, custom attributes); the finishing step
and the backends read the same parsed values back with `parse`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gen3d.serve.errors import BadRequest

MASK_POLICIES = ("auto", "required")
TEXTURES = ("vertex", "image")
TARGET_FACES_RANGE = (500, 200_000)
TEXTURE_SIZE_RANGE = (512, 2048)
DEFAULT_TEXTURE_SIZE = 1024
# Custom-attribute keys carried into `options` (e.g. `target_faces=2000,texture=image`).
COMMON = frozenset({"mask", "target_faces", "texture", "texture_size"})


@dataclass(frozen=True)
class RequestOptions:
    mask: str = "auto"
    target_faces: int | None = None  # None: the backend's own face count (today's default)
    texture: str = "vertex"
    texture_size: int = DEFAULT_TEXTURE_SIZE


def _choice(options: Mapping[str, Any], key: str, choices: tuple[str, ...]) -> str:
    value = options.get(key, choices[0])
    if not isinstance(value, str) or value.lower() not in choices:
        raise BadRequest(f"option {key!r} must be one of {', '.join(choices)}; got {value!r}")
    return value.lower()


def _int(options: Mapping[str, Any], key: str, default: int | None, bounds: tuple[int, int]):
    value = options.get(key, default)
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():  # custom attributes are text
        value = int(value.strip())
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"option {key!r} must be an integer in [{low}, {high}]; got {value!r}")
    return value


def parse(options: Mapping[str, Any] | None) -> RequestOptions:
    """The common options of one request, validated (BadRequest names the field)."""
    options = options or {}
    return RequestOptions(
        mask=_choice(options, "mask", MASK_POLICIES),
        target_faces=_int(options, "target_faces", None, TARGET_FACES_RANGE),
        texture=_choice(options, "texture", TEXTURES),
        texture_size=_int(options, "texture_size", DEFAULT_TEXTURE_SIZE, TEXTURE_SIZE_RANGE)
        or DEFAULT_TEXTURE_SIZE,
    )


def from_custom_attributes(attributes: Mapping[str, str]) -> dict[str, str]:
    """The common options named in the SageMaker custom-attributes header."""
    return {key: value for key, value in attributes.items() if key in COMMON}
