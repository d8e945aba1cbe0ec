"""`gen3d-manifest.json`: what was applied to a model directory, and the sha256 of every
file in it. Backends verify it before reading anything (gen3d.serve.errors.ArtifactError on any
mismatch), so a corrupt or mixed-up artifact is refused whole, never half-loaded."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from gen3d.serve.errors import ArtifactError

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


def symlinks(model_dir: Path) -> list[str]:
    """Every symbolic link under model_dir (to a file or a directory; not followed), as
    sorted POSIX paths. The manifest lists and hashes regular files only."""
    found = []
    for root, dirs, files in os.walk(model_dir, followlinks=False):
        for name in [*dirs, *files]:
            path = Path(root, name)
            if path.is_symlink():
                found.append(path.relative_to(model_dir).as_posix())
    return sorted(found)


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


def verify(model_dir: Path, backend: str, *, strict: bool = False) -> dict[str, Any] | None:
    """Check the manifest against the directory: backend, then the size and sha256 of
    every listed file. Raises ArtifactError naming the first problem.

    `strict` (what the server does unless GEN3D_ALLOW_UNVERIFIED_MODEL=1): the manifest
    must exist and list every file in the directory, so nothing the server loads or
    executes (weights, configs, the compile cache's code) escapes the check. Without it
    (packaging a plain source directory) a missing manifest returns None."""
    manifest = read_manifest(model_dir)
    if manifest is None:
        if strict:
            raise ArtifactError(
                f"{model_dir} has no {MANIFEST_FILE}: the server loads only files whose "
                "sha256 a manifest lists. Write one with `gen3d package` (or `gen3d proxy "
                "init` for a proxy model), or set GEN3D_ALLOW_UNVERIFIED_MODEL=1 to load "
                "the directory unchecked",
                public=f"the model directory has no {MANIFEST_FILE}",
            )
        return None
    if strict:
        # A link is resolved only when it is opened: what it names is whatever the link
        # says then, inside the directory or not, and a linked directory (the compile
        # cache's code) would bring every file below it in unlisted.
        links = symlinks(model_dir)
        if links:
            raise ArtifactError(
                f"{model_dir}: {_some(links)} is a symbolic link; the server loads only "
                f"the regular files {MANIFEST_FILE} lists (copy the target in and rebuild "
                "the manifest with `gen3d package`)",
                public="the model directory holds a symbolic link",
            )
        unlisted = sorted(set(artifact_files(model_dir)) - set(manifest["files"]))
        if unlisted:
            raise ArtifactError(
                f"{model_dir}: {_some(unlisted)} not listed in {MANIFEST_FILE}; the server "
                "loads no unverified file (rebuild the manifest with `gen3d package`)",
                public="the model directory holds files its manifest does not list",
            )
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


def _some(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
