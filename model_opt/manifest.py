"""Write `gen3d-manifest.json`: what was applied to a model directory, the library
versions, and the size and sha256 of every file (gen3d.serve.artifact.manifest reads and
verifies it at load)."""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from gen3d.serve.artifact.manifest import (
    FORMAT,
    MANIFEST_FILE,
    VERSION,
    artifact_files,
    sha256_file,
)


def file_entries(model_dir: Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    return {
        name: {"sha256": sha256_file(model_dir / name), "bytes": (model_dir / name).stat().st_size}
        for name in names
    }


def library_versions() -> dict[str, str]:
    """What built the artifact, from package metadata: importing torch only to ask cost
    `gen3d sam3d prepare` a second, and importing torchao loads dynamo (seconds)."""
    versions = {"python": platform.python_version()}
    for name in ("torch", "safetensors", "torchao"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # extras: prepare writes manifests without
            pass
    # torch built this model: its own version string is what a compile cache is matched on
    if (torch := sys.modules.get("torch")) is not None:
        versions.update(torch=torch.__version__, quantized_engine=torch.backends.quantized.engine)
    return versions


def write_manifest(
    model_dir: Path, backend: str, applied: dict[str, Any], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Hash every file now in model_dir and write the manifest next to them."""
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "backend": backend,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "applied": applied,
        "libraries": library_versions(),
        **(extra or {}),
        "files": file_entries(model_dir, artifact_files(model_dir)),
    }
    (model_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest
