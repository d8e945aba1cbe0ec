"""Strict validation of AWS request bodies against botocore's service model.

botocore's `ParamValidator` (what boto3 runs before sending) checks required members,
types and minimums only: it accepts an instance type that does not exist, a 99 999 s
timeout or 99 999 MB of serverless memory, all of which AWS itself rejects. The service
model carries the rest (`enum`, `max`, `pattern`, length limits); this module applies them
too, recursively, on top of `ParamValidator`.

`install_strict_validation()` (tests/conftest.py) makes every botocore client built in the
test session run it before each call, so every request a test sends to the moto server
is checked; `dry_run_calls()` reads the request bodies a `--dry-run` prints.

Patterns in the models are written for Java's regex engine; the `regex` package accepts
the Unicode classes they use (`\\p{L}`, `\\p{Print}`, ...); the one construct it lacks, a
surrogate-pair range for "any supplementary character", is rewritten to its code points.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

import botocore.session
import regex
from botocore import handlers
from botocore.exceptions import ParamValidationError
from botocore.model import Shape
from botocore.validate import ParamValidator

MODEL_BUCKET = "gen3d-test-models"  # where the `model_artifact` fixture puts a model

_SURROGATE_RANGE = "\\uD800\\uDC00-\\uDBFF\\uDFFF"
_NUMBER_TYPES = ("integer", "long", "float", "double")


class StrictValidationError(ParamValidationError):
    """A request body that AWS would reject by its service model."""


@cache
def _service_model(service: str) -> Any:
    return botocore.session.get_session().get_service_model(service)


@cache
def _compiled(pattern: str) -> Any:
    return regex.compile(pattern.replace(_SURROGATE_RANGE, "\\U00010000-\\U0010FFFF"))


def _length_problems(value: Any, shape: Shape, path: str, what: str) -> list[str]:
    metadata = shape.metadata
    problems = []
    if "min" in metadata and len(value) < metadata["min"]:
        problems.append(f"{path}: {what} {len(value)} is below the minimum {metadata['min']}")
    if "max" in metadata and len(value) > metadata["max"]:
        problems.append(f"{path}: {what} {len(value)} is above the maximum {metadata['max']}")
    return problems


def model_problems(value: Any, shape: Shape, path: str = "") -> list[str]:
    """What the service model forbids in `value` beyond ParamValidator's checks: enum,
    min/max (length of strings, lists, maps, blobs; range of numbers) and pattern."""
    kind = shape.type_name
    where = path or shape.name
    problems: list[str] = []
    if kind == "structure" and isinstance(value, dict):
        for name, member_value in value.items():
            member = shape.members.get(name)
            if member is not None:  # unknown members are ParamValidator's to report
                problems += model_problems(member_value, member, f"{path}.{name}".lstrip("."))
    elif kind == "list" and isinstance(value, list | tuple):
        problems += _length_problems(value, shape, where, "length")
        for i, item in enumerate(value):
            problems += model_problems(item, shape.member, f"{where}[{i}]")
    elif kind == "map" and isinstance(value, dict):
        problems += _length_problems(value, shape, where, "entries")
        for key, item in value.items():
            problems += model_problems(key, shape.key, f"{where} key {key!r}")
            problems += model_problems(item, shape.value, f"{where}[{key!r}]")
    elif kind == "string" and isinstance(value, str):
        enum = shape.enum
        if enum and value not in enum:
            shown = ", ".join(enum[:8]) + (", ..." if len(enum) > 8 else "")
            problems.append(f"{where}: {value!r} is not one of {shown}")
        problems += _length_problems(value, shape, where, "length")
        pattern = shape.metadata.get("pattern")
        if pattern and not _compiled(pattern).fullmatch(value):
            problems.append(f"{where}: {value!r} does not match the pattern {pattern}")
    elif kind in _NUMBER_TYPES and isinstance(value, int | float) and not isinstance(value, bool):
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if low is not None and value < low:
            problems.append(f"{where}: {value} is below the minimum {low}")
        if high is not None and value > high:
            problems.append(f"{where}: {value} is above the maximum {high}")
    elif kind == "blob" and isinstance(value, bytes | bytearray):
        problems += _length_problems(value, shape, where, "size")
    return problems


def request_problems(service: str, operation: str, params: dict[str, Any]) -> list[str]:
    """Every reason AWS would refuse `params` for `operation`, by botocore's own model."""
    shape = _service_model(service).operation_model(operation).input_shape
    problems = []
    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        problems.append(report.generate_report())
    return problems + model_problems(params, shape)


def validate_strictly(service: str, operation: str, params: dict[str, Any]) -> None:
    problems = request_problems(service, operation, params)
    if problems:
        raise StrictValidationError(report=f"{operation}: " + "; ".join(problems))


def _check_before_sending(params: dict[str, Any], model: Any, **_: Any) -> None:
    # botocore emits before-parameter-build.<service>.<operation> with the caller's
    # parameters before it serialises (and runs its own ParamValidator).
    problems = model_problems(params, model.input_shape) if model.input_shape else []
    if problems:
        raise StrictValidationError(report=f"{model.name}: " + "; ".join(problems))


def install_strict_validation() -> None:
    """Make every botocore session created from now on check each request strictly.

    botocore registers `handlers.BUILTIN_HANDLERS` on every new session, so appending one
    entry reaches every client the code under test builds, however it builds it."""
    entry = ("before-parameter-build", _check_before_sending)
    if entry not in handlers.BUILTIN_HANDLERS:
        handlers.BUILTIN_HANDLERS.append(entry)


# ---------------------------------------------------------------- dry-run output

_CALL_LINE = re.compile(r"^ +would call +(\S+) (\S+)$", re.MULTILINE)


def dry_run_calls(output: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(service, operation, body) for every `would call SERVICE OPERATION` block that a
    `--dry-run` printed; the JSON body follows the line."""
    decoder = json.JSONDecoder()
    for match in _CALL_LINE.finditer(output):
        start = output.index("{", match.end())
        body, _ = decoder.raw_decode(output, start)
        yield match.group(1), match.group(2), body
