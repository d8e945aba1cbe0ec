"""`gen3d-manifest.json`: what was applied to a model directory, and the sha256 of every
file in it. Backends verify it before reading anything (serve.errors.ArtifactError on any
mismatch), so a corrupt or mixed-up artifact is refused whole, never half-loaded."""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from serve.errors import ArtifactError

MANIFEST_FILE = "gen3d-manifest.json"
FORMAT = "gen3d-manifest"
VERSION = 1
CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def artifact_files(model_dir: Path) -> list[str]:
    """Every regular file under model_dir except the manifest, as sorted POSIX paths."""
    files = []
    for path in model_dir.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.name != MANIFEST_FILE:
            files.append(path.relative_to(model_dir).as_posix())
    return sorted(files)


def file_entries(model_dir: Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    return {
        name: {"sha256": sha256_file(model_dir / name), "bytes": (model_dir / name).stat().st_size}
        for name in names
    }


def library_versions() -> dict[str, str]:
    import safetensors
    import torch

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "safetensors": safetensors.__version__,
        "quantized_engine": torch.backends.quantized.engine,
    }
    try:
        import torchao

        versions["torchao"] = torchao.__version__
    except ImportError:
        pass
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


def read_manifest(model_dir: Path) -> dict[str, Any] | None:
    """The parsed manifest, or None when the directory has none (a plain model dir)."""
    path = model_dir / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not a gen3d manifest")
    if manifest.get("version") != VERSION:
        raise ArtifactError(
            f"{path}: manifest version {manifest.get('version')!r}, this server reads {VERSION}"
        )
    if not isinstance(manifest.get("files"), dict) or not isinstance(manifest.get("applied"), dict):
        raise ArtifactError(f"{path}: manifest lacks 'files' or 'applied'")
    return manifest


def verify(model_dir: Path, backend: str) -> dict[str, Any] | None:
    """Check the manifest (if any) against the directory: backend, then the size and
    sha256 of every listed file. Raises ArtifactError naming the first problem."""
    manifest = read_manifest(model_dir)
    if manifest is None:
        return None
    if manifest.get("backend") != backend:
        raise ArtifactError(
            f"{model_dir}: artifact was optimised for backend {manifest.get('backend')!r}, "
            f"not {backend!r}"
        )
    for name, entry in sorted(manifest["files"].items()):
        path = model_dir / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise ArtifactError(f"{model_dir}: manifest names a path outside the artifact: {name}")
        if not path.is_file():
            raise ArtifactError(f"{model_dir}: {name} is listed in the manifest but missing")
        size = path.stat().st_size
        if size != entry.get("bytes"):
            raise ArtifactError(
                f"{model_dir}: {name} is {size} bytes, the manifest says {entry.get('bytes')} "
                "(corrupt or truncated artifact)"
            )
        if sha256_file(path) != entry.get("sha256"):
            raise ArtifactError(
                f"{model_dir}: {name} does not match its sha256 in the manifest "
                "(corrupt or mismatched artifact)"
            )
    return manifest
