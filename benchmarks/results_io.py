"""Result documents: one JSON file per suite run, under <out>/<device>/."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from gen3d.benchmarks.environment import device_slug, load_average

SCHEMA = "gen3d-bench/1"
SECONDS_PER_IMAGE_FILE = "seconds_per_image.json"


class Recorder:
    """Collects one suite run; `write` adds the fingerprint, timing and load average."""

    def __init__(
        self, suite: str, name: str, environment: dict[str, Any], config: dict[str, Any]
    ) -> None:
        self.suite = suite
        self.name = name
        self.environment = environment
        self.config = config
        self.results: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.skipped: list[dict[str, str]] = []
        # figures across all results (e.g. overload's peak goodput); written only when set,
        # so the documents of suites without one keep their shape
        self.summary: dict[str, Any] = {}
        self._started = time.monotonic()

    def add(self, result: dict[str, Any]) -> None:
        self.results.append(result)

    def skip(self, what: str, why: str) -> None:
        self.skipped.append({"what": what, "why": why})

    def document(self) -> dict[str, Any]:
        doc = {
            "schema": SCHEMA,
            "suite": self.suite,
            "name": self.name,
            "environment": self.environment,
            "config": self.config,
            "results": self.results,
            "skipped": self.skipped,
            "notes": self.notes,
            "duration_s": round(time.monotonic() - self._started, 2),
            "load_average_end": load_average(),
        }
        if self.summary:
            doc["summary"] = self.summary
        return doc

    def write(self, out_root: Path) -> Path:
        folder = out_root / device_slug(self.environment)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.suite}_{self.name}.json"
        path.write_text(json.dumps(_finite(self.document()), indent=1, sort_keys=False) + "\n")
        return path


def _finite(value: Any) -> Any:
    """JSON has no NaN/Infinity: write them as null so every reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def load_documents(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every result document under `root` (recursively), sorted by path.

    Files that are not ours (another tool's JSON, the seconds-per-image output) are
    skipped: a document is ours when its "schema" is SCHEMA.
    """
    found = []
    for path in sorted(root.rglob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and data.get("schema") == SCHEMA:
            found.append((path, data))
    return found
