"""Seconds per image from the benchmark's results file.

Schema: {"entries": [{"backend", "device", "gpu_name", "instance_type", "precision",
"batch", "seconds_per_image"}, ...]}. Entries are matched on backend (and instance type
when one is asked for); among the matches the fastest is used, preferring entries
measured on the instance type being priced, then on a GPU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class BenchError(ValueError):
    """The results file is unreadable or holds no usable entry."""


@dataclass(frozen=True)
class BenchEntry:
    backend: str
    device: str
    gpu_name: str | None
    instance_type: str | None
    precision: str
    batch: int
    seconds_per_image: float

    def describe(self) -> str:
        where = self.instance_type or self.gpu_name or self.device
        return f"{self.backend} on {where}, {self.precision}, batch {self.batch}"


def _entry(raw: Any, index: int, path: Path) -> BenchEntry:
    if not isinstance(raw, dict):
        raise BenchError(f"{path}: entry {index} is not an object")
    try:
        entry = BenchEntry(
            backend=str(raw["backend"]),
            device=str(raw["device"]),
            gpu_name=raw.get("gpu_name"),
            instance_type=raw.get("instance_type"),
            precision=str(raw["precision"]),
            batch=int(raw["batch"]),
            seconds_per_image=float(raw["seconds_per_image"]),
        )
    except KeyError as exc:
        raise BenchError(f"{path}: entry {index} lacks {exc.args[0]!r}") from None
    except (TypeError, ValueError):
        raise BenchError(f"{path}: entry {index} has a field of the wrong type") from None
    if not entry.seconds_per_image > 0:
        raise BenchError(f"{path}: entry {index} has seconds_per_image <= 0")
    return entry


def read_entries(path: Path) -> list[BenchEntry]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchError(f"benchmark results not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise BenchError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise BenchError(f'{path}: expected an object with an "entries" list')
    return [_entry(raw, i, path) for i, raw in enumerate(data["entries"])]


def pick_entry(
    entries: list[BenchEntry],
    backend: str,
    instance_type: str | None,
    priced_instance_type: str,
) -> BenchEntry:
    matches = [e for e in entries if e.backend == backend]
    if instance_type is not None:
        matches = [e for e in matches if e.instance_type == instance_type]
    if not matches:
        have = sorted({f"{e.backend}@{e.instance_type or e.device}" for e in entries})
        wanted = backend + (f" on {instance_type}" if instance_type else "")
        raise BenchError(
            f"no benchmark entry for {wanted}; the file has: {', '.join(have) or 'nothing'}"
        )
    return min(
        matches,
        key=lambda e: (
            e.instance_type != priced_instance_type,
            e.device == "cpu",
            e.seconds_per_image,
        ),
    )
