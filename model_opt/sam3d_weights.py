"""`gen3d sam3d prepare`: SAM 3D Objects' checkpoints, DINOv2's torch.hub cache and MoGe's
Hugging Face cache, laid out as the sam3d backend loads them (serve/backends/sam3d/loading.py),
with the manifest the server verifies.

Sources, from facebookresearch/sam-3d-objects at the pinned commit cf066761:
- doc/setup.md: the checkpoints are the gated Hugging Face repo `facebook/sam-3d-objects`
  (request access on its page, then authenticate); its `checkpoints/` folder becomes
  `checkpoints/hf/` (`mv checkpoints/hf-download/checkpoints checkpoints/hf`), which holds
  the `pipeline.yaml` that `Inference(config_path)` reads (README.md, demo.py).
- model/backbone/dit/embedder/dino.py: `torch.hub.load(repo_or_dir, dino_model, ...)` with
  `facebookresearch/dinov2`, `dinov2_vitl14_reg`; torch.hub keeps the code as
  `hub/facebookresearch_dinov2_main` (from github.com/.../zipball/main) and the weights
  under `hub/checkpoints/` by their URL's file name (DINOv2's hub: dl.fbaipublicfiles.com/
  dinov2/dinov2_vitl14/dinov2_vitl14_reg4_pretrain.pth).
- notebook/mesh_alignment.py:37: MoGe as `MoGeModel.from_pretrained("Ruicheng/moge-vitl")`,
  which is `hf_hub_download(repo_id, filename="model.pt")` (MoGe's moge/model/v1.py); the
  repo named under `depth_model` in the downloaded pipeline.yaml wins when there is one.

Downloads resume: Hugging Face files through huggingface_hub's cache (an interrupted file
continues from its `.incomplete` part with an HTTP Range request; complete files are not
fetched again), the DINOv2 weights from their `.partial` file the same way. The server
reads the Hugging Face cache offline, so the MoGe cache is made of plain files: no
symlinks (the manifest and `gen3d package` skip links) and no duplicate blobs.
"""

from __future__ import annotations

import os
import shutil
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from gen3d.serve.backends.sam3d.loading import CACHE_DIRS, DINOV2_FILES

SAM3D_REPO = "facebook/sam-3d-objects"
SAM3D_PAGE = f"https://huggingface.co/{SAM3D_REPO}"
CHECKPOINTS = "checkpoints/hf"  # loading.CONFIG_CANDIDATES[0]'s folder
MOGE_REPO = "Ruicheng/moge-vitl"
MOGE_FILE = "model.pt"
DINOV2_CODE_URL = "https://github.com/facebookresearch/dinov2/zipball/main"
DINOV2_WEIGHTS_URL = (
    "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_reg4_pretrain.pth"
)
DINOV2_CODE_DIR = Path(DINOV2_FILES[0]).parent  # caches/torch/hub/facebookresearch_dinov2_main
DINOV2_WEIGHTS = Path(DINOV2_FILES[1])  # caches/torch/hub/checkpoints/<weights file>
HF_HUB_DIR = Path(CACHE_DIRS["HF_HOME"]) / "hub"  # HF_HOME/hub: huggingface_hub's cache
CHUNK = 1 << 20

Progress = Callable[[str], None]


class PrepareError(Exception):
    """A one-line reason and what to do about it."""


@dataclass
class Prepared:
    out: Path
    files: int = 0
    bytes: int = 0
    downloaded: dict[str, int] = field(default_factory=dict)  # source -> bytes fetched
    sources: dict[str, Any] = field(default_factory=dict)


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise PrepareError(
            "huggingface_hub is not installed: pip install 'gen3d[weights]'"
        ) from None
    return huggingface_hub


def hf_token(explicit: str | None) -> str:
    """--token, else HF_TOKEN, else the token `hf auth login` stored."""
    token = explicit or _hub().get_token()
    if not token:
        raise PrepareError(
            f"no Hugging Face token: request access at {SAM3D_PAGE}, create a read token at "
            "https://huggingface.co/settings/tokens, then `hf auth login` or set HF_TOKEN"
        )
    return token


def _hub_failure(exc: Exception, repo: str) -> PrepareError:
    """huggingface_hub's errors as one line that says what to do."""
    from huggingface_hub import errors

    page = f"https://huggingface.co/{repo}"
    if isinstance(exc, errors.GatedRepoError):
        return PrepareError(
            f"access to {repo} has not been granted to this token's account: request it at "
            f"{page} and run this again once the request is accepted"
        )
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, errors.RepositoryNotFoundError) or status == 401:
        return PrepareError(
            f"{repo} refused the token (not found or not authorised): check that the token "
            f"is valid (`hf auth whoami`) and that access was granted at {page}"
        )
    if isinstance(exc, errors.RevisionNotFoundError):
        return PrepareError(f"{repo} has no such revision: {exc}")
    cut_off = isinstance(exc, requests.RequestException) and not isinstance(exc, requests.HTTPError)
    if cut_off or isinstance(exc, errors.LocalEntryNotFoundError):
        return PrepareError(
            f"cannot reach the Hugging Face hub for {repo} ({type(exc).__name__}); files "
            "already fetched are kept: run the same command again to resume"
        )
    return PrepareError(f"{repo}: {str(exc).splitlines()[0]}")


def _hub_errors() -> tuple[type[Exception], ...]:
    from huggingface_hub import errors

    return (errors.HfHubHTTPError, errors.LocalEntryNotFoundError, requests.RequestException)


def _place(src: Path, dst: Path) -> None:
    """dst as a regular file with src's bytes: a hard link when on the same file system."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".placing")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src.resolve(), tmp)
    except OSError:
        shutil.copyfile(src.resolve(), tmp)
    tmp.replace(dst)


def _sizes(api: Any, repo: str, revision: str | None, token: str, prefix: str) -> dict[str, int]:
    info = api.model_info(repo, revision=revision, files_metadata=True, token=token)
    return {
        s.rfilename: int(s.size or 0) for s in info.siblings or [] if s.rfilename.startswith(prefix)
    }


def fetch_checkpoints(
    out: Path, token: str, revision: str | None, cache_dir: Path | None, progress: Progress
) -> tuple[int, str]:
    """facebook/sam-3d-objects' checkpoints/ -> OUT/checkpoints/hf/ (doc/setup.md)."""
    hub = _hub()
    api = hub.HfApi()
    try:
        sizes = _sizes(api, SAM3D_REPO, revision, token, "checkpoints/")
        if not sizes:
            raise PrepareError(f"{SAM3D_REPO} lists no checkpoints/ folder")
        progress(
            f"{SAM3D_REPO}: {len(sizes)} files, {sum(sizes.values()) / 1e9:.2f} GB "
            "(complete files already in the Hugging Face cache are not fetched again)"
        )
        snapshot = Path(
            hub.snapshot_download(
                SAM3D_REPO,
                repo_type="model",
                revision=revision,
                allow_patterns=["checkpoints/*"],
                token=token,
                cache_dir=str(cache_dir) if cache_dir else None,
            )
        )
    except _hub_errors() as exc:
        raise _hub_failure(exc, SAM3D_REPO) from None
    target = out / CHECKPOINTS
    for name in sizes:
        _place(snapshot / name, target / Path(name).relative_to("checkpoints"))
    if not (target / "pipeline.yaml").is_file():
        raise PrepareError(f"{SAM3D_REPO}'s checkpoints/ has no pipeline.yaml")
    return sum(sizes.values()), snapshot.name


def moge_repo_of(pipeline_yaml: Path) -> str | None:
    """The Hugging Face repo pipeline.yaml's depth model loads, if it names one."""
    import yaml

    def repos(node: Any, under_depth: bool) -> list[str]:
        found = []
        if isinstance(node, dict):
            for key, value in node.items():
                inside = under_depth or "depth_model" in str(key)
                if inside and key == "pretrained_model_name_or_path" and isinstance(value, str):
                    found.append(value)
                found += repos(value, inside)
        elif isinstance(node, list):
            for value in node:
                found += repos(value, under_depth)
        return found

    try:
        config = yaml.safe_load(pipeline_yaml.read_text())
    except (OSError, yaml.YAMLError):
        return None
    names = [n for n in repos(config, False) if n.count("/") == 1 and not Path(n).exists()]
    return names[0] if names else None


def fetch_moge(out: Path, repo: str, token: str, progress: Progress) -> int:
    """MoGe's model.pt into OUT/caches/huggingface/hub as huggingface_hub's cache, then
    with plain files in place of its snapshot symlinks (read offline by the server)."""
    hub = _hub()
    cache = out / HF_HUB_DIR
    try:
        size = _sizes(hub.HfApi(), repo, None, token, MOGE_FILE).get(MOGE_FILE, 0)
        progress(f"{repo}: {MOGE_FILE}, {size / 1e9:.2f} GB")
        hub.hf_hub_download(repo, MOGE_FILE, repo_type="model", token=token, cache_dir=cache)
    except _hub_errors() as exc:
        raise _hub_failure(exc, repo) from None
    materialize_cache(cache)
    return size


def materialize_cache(cache: Path) -> None:
    """Replace each snapshot symlink by the blob it points at, then drop blobs/ and the
    lock files: the layout an offline `hf_hub_download` reads (refs/ + snapshots/)."""
    for link in sorted(cache.glob("models--*/snapshots/*/**/*")):
        if link.is_symlink():
            _place(link, link)
    for repo_dir in cache.glob("models--*"):
        shutil.rmtree(repo_dir / "blobs", ignore_errors=True)
    shutil.rmtree(cache / ".locks", ignore_errors=True)


def download(url: str, dest: Path, progress: Progress, session: requests.Session) -> int:
    """url -> dest, resuming a `.partial` left by an interrupted run (HTTP Range)."""
    partial = dest.with_name(dest.name + ".partial")
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = partial.stat().st_size if partial.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        with session.get(url, headers=headers, stream=True, timeout=60) as response:
            if response.status_code == 416:  # nothing left to fetch
                partial.replace(dest)
                return 0
            response.raise_for_status()
            if have and response.status_code != 206:
                have = 0  # the server ignored the range: start over
            total = have + int(response.headers.get("Content-Length", 0))
            progress(f"{url}: {total / 1e9:.2f} GB" + (f", resuming at {have:,}" if have else ""))
            fetched = 0
            with partial.open("ab" if have else "wb") as fh:
                for chunk in response.iter_content(CHUNK):
                    fh.write(chunk)
                    fetched += len(chunk)
    except requests.RequestException as exc:
        raise PrepareError(
            f"{url}: {type(exc).__name__}; the part fetched is kept in {partial}: "
            "run the same command again to resume"
        ) from None
    if total and partial.stat().st_size != total:
        raise PrepareError(
            f"{url}: got {partial.stat().st_size:,} of {total:,} bytes; "
            "run the same command again to resume"
        )
    partial.replace(dest)
    return fetched


def fetch_dinov2(
    out: Path,
    torch_home: Path | None,
    code_url: str,
    weights_url: str,
    progress: Progress,
) -> int:
    """torch.hub's offline cache for facebookresearch/dinov2 + dinov2_vitl14_reg."""
    code_dir, weights = out / DINOV2_CODE_DIR, out / DINOV2_WEIGHTS
    if torch_home is not None:  # a TORCH_HOME where torch.hub.load has run once
        src_code, src_weights = torch_home / "hub" / code_dir.name, torch_home / "hub"
        src_weights = src_weights / "checkpoints" / weights.name
        if not (src_code / "hubconf.py").is_file() or not src_weights.is_file():
            raise PrepareError(
                f"{torch_home} is not a TORCH_HOME where torch.hub.load('facebookresearch/"
                f"dinov2', 'dinov2_vitl14_reg') ran: {src_code}/hubconf.py or {src_weights} "
                "is missing"
            )
        shutil.rmtree(code_dir, ignore_errors=True)
        shutil.copytree(src_code, code_dir, ignore=shutil.ignore_patterns("__pycache__"))
        _place(src_weights, weights)
        return 0
    fetched = 0
    with requests.Session() as session:
        if not (code_dir / "hubconf.py").is_file():
            archive = out.parent / f".{out.name}.dinov2.zip"  # outside the artifact
            fetched += download(code_url, archive, progress, session)
            unpack_hub_archive(archive, code_dir)
            archive.unlink()
        if not weights.is_file():
            fetched += download(weights_url, weights, progress, session)
    return fetched


def unpack_hub_archive(archive: Path, code_dir: Path) -> None:
    """GitHub's zipball holds one top folder (owner-repo-sha); torch.hub renames it to
    owner_repo_branch. Members are checked to stay inside it."""
    staging = code_dir.with_name(code_dir.name + ".unpacking")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            tops = {n.split("/", 1)[0] for n in names}
            if len(tops) != 1 or any(".." in Path(n).parts or n.startswith("/") for n in names):
                raise PrepareError(f"{archive}: not a single-folder repository archive")
            zf.extractall(staging)
    except zipfile.BadZipFile:
        raise PrepareError(f"{archive}: not a zip archive") from None
    (top,) = tops
    if not (staging / top / "hubconf.py").is_file():
        raise PrepareError(f"{archive}: no hubconf.py in the DINOv2 repository archive")
    shutil.rmtree(code_dir, ignore_errors=True)
    (staging / top).replace(code_dir)
    shutil.rmtree(staging)


def prepare(
    out: Path,
    *,
    token: str | None = None,
    revision: str | None = None,
    cache_dir: Path | None = None,
    moge_repo: str | None = None,
    torch_home: Path | None = None,
    dinov2_code_url: str = DINOV2_CODE_URL,
    dinov2_weights_url: str = DINOV2_WEIGHTS_URL,
    progress: Progress = print,
) -> Prepared:
    """Fetch everything into OUT and write gen3d-manifest.json (last, so a directory with
    a manifest is a complete one)."""
    from gen3d.model_opt.manifest import write_manifest
    from gen3d.serve.artifact.manifest import MANIFEST_FILE, verify

    started = time.monotonic()
    token = hf_token(token)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_FILE).unlink(missing_ok=True)  # incomplete until written again
    result = Prepared(out=out)
    sam3d_bytes, commit = fetch_checkpoints(out, token, revision, cache_dir, progress)
    result.downloaded[SAM3D_REPO] = sam3d_bytes
    moge = moge_repo or moge_repo_of(out / CHECKPOINTS / "pipeline.yaml") or MOGE_REPO
    result.downloaded[moge] = fetch_moge(out, moge, token, progress)
    result.downloaded["dinov2"] = fetch_dinov2(
        out, torch_home, dinov2_code_url, dinov2_weights_url, progress
    )
    result.sources = {
        "sam3d_repo": SAM3D_REPO,
        "sam3d_commit": commit,
        "moge_repo": moge,
        "dinov2": "torch_home" if torch_home else [dinov2_code_url, dinov2_weights_url],
    }
    manifest = write_manifest(out, "sam3d", {"variant": None, "prepared": result.sources})
    verify(out, "sam3d", strict=True)  # what the server does first at load
    result.files = len(manifest["files"])
    result.bytes = sum(entry["bytes"] for entry in manifest["files"].values())
    progress(f"prepared {out} in {time.monotonic() - started:.0f} s")
    return result
