"""Options every backend accepts (issue 15): mask policy, face budget, texture.

Parsed once at decode time, so an out-of-range value is the client's 400 naming the
field in every request form (JSON, multipart, custom attributes); the finishing step
and the backends read the same parsed values back with `parse`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gen3d.serve.errors import BadRequest, Gen3DError

MASK_POLICIES = ("auto", "required")
TEXTURES = ("vertex", "image")
TARGET_FACES_RANGE = (500, 200_000)
TEXTURE_SIZE_RANGE = (512, 2048)
DEFAULT_TEXTURE_SIZE = 1024
# Custom-attribute keys carried into `options` (e.g. `target_faces=2000,texture=image`).
COMMON = frozenset({"mask", "target_faces", "texture", "texture_size"})
# Text a client may write for a number: ASCII digits only (str.isdigit() also accepts
# "²" and other digits int() refuses), at most 20 of them (no accepted number is longer,
# and int() of a long string costs quadratic time).
MAX_DIGITS = 20
_DIGITS = re.compile(rf"[0-9]{{1,{MAX_DIGITS}}}", re.ASCII)


@dataclass(frozen=True)
class RequestOptions:
    mask: str = "auto"
    target_faces: int | None = None  # None: the backend's own face count (today's default)
    texture: str = "vertex"
    texture_size: int = DEFAULT_TEXTURE_SIZE


def _choice(options: Mapping[str, Any], key: str, choices: tuple[str, ...]) -> str:
    value = options.get(key, choices[0])
    if not isinstance(value, str) or value.lower() not in choices:
        raise BadRequest(f"option {key!r} must be one of {', '.join(choices)}; got {_shown(value)}")
    return value.lower()


def client_int(
    value: Any, what: str, bounds: tuple[int, int], error: type[Gen3DError] = BadRequest
) -> int:
    """The one reader of a number a client sent, in any request form: a JSON integer or
    the text of a form field or custom attribute (ASCII digits, surrounding blanks
    allowed). Anything else, or a value outside `bounds`, is `error` naming `what`."""
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        value = int(value.strip())
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise error(f"{what} must be an integer in [{low}, {high}]; got {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    """A client's value for an error message: its repr, cut short."""
    text = repr(value) if not isinstance(value, int) or value.bit_length() < 200 else "(huge)"
    return text if len(text) <= 40 else text[:37] + "..."


def _int(
    options: Mapping[str, Any], key: str, default: int | None, bounds: tuple[int, int]
) -> int | None:
    value = options.get(key, default)
    if value is None:
        return None
    return client_int(value, f"option {key!r}", bounds)


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
