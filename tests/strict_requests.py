"""A strict check of an AWS request body against botocore's service model: botocore's own
ParamValidator (required members, types, minimums) plus the model rules it does not
enforce: `enum`, `max` (length of strings, blobs and lists; value of numbers) and
`pattern`, recursively. Used where a call cannot reach moto (the Stubber seam).

Patterns are written for Java's regex engine; the classes they use are translated
(\\p{ASCII}, \\p{Print}, \\z) and an unknown \\p{...} class fails loudly rather than being
skipped. AWS patterns are not implicitly anchored, hence re.search.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import botocore.session
from botocore.validate import ParamValidator

_JAVA_CLASSES = {r"\p{ASCII}": r"\x00-\x7F", r"\p{Print}": r"\x20-\x7E"}


@cache
def _model(service: str) -> Any:
    return botocore.session.get_session().get_service_model(service)


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    translated = pattern.replace(r"\z", r"\Z")
    for java, python in _JAVA_CLASSES.items():
        # inside a bracket expression the class is spliced in; alone it becomes one
        translated = translated.replace(f"[{java}]", f"[{python}]").replace(java, f"[{python}]")
    if r"\p{" in translated:
        raise AssertionError(f"untranslated Java regex class in {pattern!r}")
    return re.compile(translated, re.DOTALL)


def problems(service: str, operation: str, params: dict[str, Any]) -> list[str]:
    """Every rule `params` breaks, as readable lines (empty: valid)."""
    shape = _model(service).operation_model(operation).input_shape
    report = ParamValidator().validate(params, shape)
    found = [report.generate_report()] if report.has_errors() else []
    _walk(shape, params, operation, found)
    return found


def assert_valid(service: str, operation: str, params: dict[str, Any]) -> None:
    found = problems(service, operation, params)
    assert not found, f"invalid {operation} request:\n" + "\n".join(found)


def _walk(shape: Any, value: Any, path: str, found: list[str]) -> None:
    meta = shape.metadata
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():
            if name in value:
                _walk(member, value[name], f"{path}.{name}", found)
        return
    if kind == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            found.append(f"{path}: {len(value)} items > max {meta['max']}")
        for index, entry in enumerate(value):
            _walk(shape.member, entry, f"{path}[{index}]", found)
        return
    if kind == "map" and isinstance(value, dict):
        for key, entry in value.items():
            _walk(shape.key, key, f"{path} key", found)
            _walk(shape.value, entry, f"{path}[{key!r}]", found)
        return
    if kind == "string" and isinstance(value, str):
        enum = shape.enum
        if enum and value not in enum:
            found.append(f"{path}: {value!r} not in enum {sorted(enum)}")
        if "max" in meta and len(value) > meta["max"]:
            found.append(f"{path}: length {len(value)} > max {meta['max']}")
        if "pattern" in meta and not _regex(meta["pattern"]).search(value):
            found.append(f"{path}: {value!r} does not match {meta['pattern']!r}")
        return
    if kind == "blob" and isinstance(value, bytes | bytearray):
        if "max" in meta and len(value) > meta["max"]:
            found.append(f"{path}: {len(value)} bytes > max {meta['max']}")
        return
    if kind in ("integer", "long", "float", "double") and isinstance(value, int | float):
        if "max" in meta and value > meta["max"]:
            found.append(f"{path}: {value} > max {meta['max']}")
