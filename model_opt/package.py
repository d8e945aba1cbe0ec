"""`gen3d package`: a model directory -> model.tar.gz (SageMaker `ModelDataUrl`) or an
uncompressed S3 prefix (`ModelDataSource` with `CompressionType: None`, which skips the
download-and-extract step at cold start). The package always carries a
gen3d-manifest.json with the sha256 of every file, which the server verifies at load.
For sam3d it bundles the offline hub caches the adapter points TORCH_HOME / HF_HOME at."""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gen3d.model_opt.manifest import library_versions
from gen3d.serve.artifact.manifest import (
    FORMAT,
    MANIFEST_FILE,
    VERSION,
    artifact_files,
    sha256_file,
    verify,
)

SAM3D_CACHES = {"torch": "caches/torch", "huggingface": "caches/huggingface"}
SHA_METADATA = "sha256"  # x-amz-meta-sha256 on every uploaded object


def detect_backend(model_dir: Path) -> str:
    if (model_dir / "config.json").is_file():
        try:
            if json.loads((model_dir / "config.json").read_text()).get("backend") == "proxy":
                return "proxy"
        except (OSError, json.JSONDecodeError):
            pass
    if (model_dir / "checkpoints/hf/pipeline.yaml").is_file() or (
        model_dir / "pipeline.yaml"
    ).is_file():
        return "sam3d"
    raise ValueError(
        f"{model_dir}: neither a proxy model (config.json) nor a SAM 3D "
        "model (checkpoints/hf/pipeline.yaml); pass --backend"
    )


@dataclass
class Package:
    backend: str
    entries: dict[str, Path] = field(default_factory=dict)  # arcname -> source file
    manifest: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def manifest_bytes(self) -> bytes:
        return (json.dumps(self.manifest, indent=2, sort_keys=True) + "\n").encode()

    @property
    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.entries.values()) + len(self.manifest_bytes)


def collect(
    model_dir: Path, backend: str | None = None, extra_dirs: dict[str, Path] | None = None
) -> Package:
    """Every file of model_dir plus extra_dirs (arc prefix -> directory), and a manifest
    covering them all. A source manifest is verified first and its 'applied' kept."""
    backend = backend or detect_backend(model_dir)
    existing = verify(model_dir, backend)  # refuses a corrupt source artifact
    package = Package(backend=backend)
    for name in artifact_files(model_dir):
        package.entries[name] = model_dir / name
    for prefix, directory in (extra_dirs or {}).items():
        if not directory.is_dir():
            raise ValueError(f"{directory} is not a directory")
        for name in artifact_files(directory):
            package.entries[f"{prefix}/{name}"] = directory / name
    if backend == "sam3d":
        for cache in SAM3D_CACHES.values():
            if not any(n.startswith(cache + "/") for n in package.entries):
                package.warnings.append(
                    f"no {cache}/ in the package: the server runs with hubs offline, so "
                    "SAM 3D's load will fail (pass --torch-home / --hf-home)"
                )
    base = (
        dict(existing)
        if existing
        else {
            "format": FORMAT,
            "version": VERSION,
            "backend": backend,
            "applied": {"variant": None},
            "libraries": library_versions(),
        }
    )
    base["files"] = {
        name: {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        for name, path in sorted(package.entries.items())
    }
    package.manifest = base
    return package


def write_tar_gz(package: Package, out: Path) -> Path:
    """Files at the archive root (SageMaker extracts it into /opt/ml/model)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    with tarfile.open(tmp, "w:gz") as tar:
        data = package.manifest_bytes
        info = tarfile.TarInfo(MANIFEST_FILE)
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
        for name, path in sorted(package.entries.items()):
            tar.add(path, arcname=name, recursive=False)
    tmp.replace(out)
    return out


def parse_s3_url(url: str) -> tuple[str, str]:
    if not url.startswith("s3://"):
        raise ValueError(f"{url}: not an s3:// URL")
    bucket, _, key = url[5:].partition("/")
    if not bucket:
        raise ValueError(f"{url}: no bucket")
    return bucket, key


def _unchanged(s3: Any, bucket: str, key: str, sha256: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError:
        return False
    return head.get("Metadata", {}).get(SHA_METADATA) == sha256


def upload_prefix(
    package: Package, s3: Any, bucket: str, prefix: str, progress: Any = lambda _: None
) -> dict[str, int]:
    """Upload each file under prefix/ (idempotent: objects whose stored sha256 matches
    are skipped); the manifest goes last, so a reader never sees it before the files."""
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    counts = {"uploaded": 0, "unchanged": 0}
    for name, path in sorted(package.entries.items()):
        sha = package.manifest["files"][name]["sha256"]
        key = prefix + name
        if _unchanged(s3, bucket, key, sha):
            counts["unchanged"] += 1
            continue
        s3.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": {SHA_METADATA: sha}})
        counts["uploaded"] += 1
        progress(f"  s3://{bucket}/{key}")
    s3.put_object(
        Bucket=bucket,
        Key=prefix + MANIFEST_FILE,
        Body=package.manifest_bytes,
        ContentType="application/json",
    )
    return counts


def upload_tar_gz(package: Package, s3: Any, bucket: str, key: str) -> None:
    with tempfile.TemporaryDirectory(prefix="gen3d-package-") as tmp:
        archive = write_tar_gz(package, Path(tmp) / "model.tar.gz")
        s3.upload_file(
            str(archive), bucket, key, ExtraArgs={"Metadata": {SHA_METADATA: sha256_file(archive)}}
        )


def model_data_hint(url: str, uncompressed: bool) -> dict[str, Any]:
    """What to put in CreateModel's PrimaryContainer for this package."""
    if uncompressed:
        return {
            "ModelDataSource": {
                "S3DataSource": {
                    "S3Uri": url.rstrip("/") + "/",
                    "S3DataType": "S3Prefix",
                    "CompressionType": "None",
                }
            }
        }
    return {"ModelDataUrl": url}


def download_prefix(s3: Any, bucket: str, prefix: str, target: Path) -> int:
    """Mirror an uncompressed package prefix into target (what SageMaker does)."""
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix) :]
            if not rel or ".." in Path(rel).parts:
                continue
            path = target / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(path))
            count += 1
    return count
