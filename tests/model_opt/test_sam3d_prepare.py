"""`gen3d sam3d prepare` against a loopback stand-in of the Hugging Face hub (HF_ENDPOINT)
and of DINOv2's two URLs: the real huggingface_hub client, the real CLI in a subprocess,
the result checked by independent readers (an offline hf_hub_download, the server's
manifest check, the sam3d backend's load with the stand-in pipeline)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hf_hub_standin import GRANTED, PENDING, Hub, Repo, serve

from gen3d.serve.artifact.manifest import MANIFEST_FILE, read_manifest, verify

STANDIN = Path(__file__).resolve().parents[1] / "fixtures" / "sam3d_standin"
SAM3D = "facebook/sam-3d-objects"
MOGE = "Ruicheng/moge-vitl"
# pipeline.yaml as the stand-in pipeline reads it, naming MoGe under depth_model
PIPELINE = (
    "device: cpu\nss_inference_steps: 25\nslat_inference_steps: 25\n"
    f"depth_model:\n  model:\n    pretrained_model_name_or_path: {MOGE}\n"
)
# 24 MiB: cut off halfway, past huggingface_hub's first 10 MiB chunk (what it keeps)
BIG = bytes(range(256)) * (24 * 4096)
WEIGHTS = "dinov2_vitl14_reg4_pretrain.pth"


def dinov2_zipball() -> bytes:
    """GitHub's zipball shape: one top folder named owner-repo-sha."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("facebookresearch-dinov2-e1277af/hubconf.py", "dependencies = ['torch']\n")
        zf.writestr("facebookresearch-dinov2-e1277af/dinov2/__init__.py", "")
    return buffer.getvalue()


@pytest.fixture
def hub() -> Iterator[Hub]:
    state = Hub(
        repos={
            SAM3D: Repo(
                gated=True,
                files={
                    "checkpoints/pipeline.yaml": PIPELINE.encode(),
                    "checkpoints/ss_generator.ckpt": BIG,
                    "checkpoints/ss_generator.yaml": b"module: {}\n",
                    "checkpoints/slat_decoder_mesh.ckpt": b"m" * 4096,
                    "README.md": b"not under checkpoints/: not fetched\n",
                    "doc/figure.png": b"\x89PNG not fetched",
                },
            ),
            MOGE: Repo(files={"model.pt": b"moge" * 1000, "README.md": b"moge"}),
        },
        plain={"dinov2.zip": dinov2_zipball(), WEIGHTS: BIG[::-1]},
    )
    server, thread = serve(state)
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def prepare(hub: Hub, out: Path, home: Path, token: str | None, *extra: str):
    """The CLI in a fresh process: huggingface_hub reads HF_ENDPOINT / HF_HOME at import."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "AWS_"))}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HOME=str(home),  # no stored token there
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_XET="1",
    )
    if token:
        env["HF_TOKEN"] = token
    args = [
        sys.executable,
        "-m",
        "gen3d.cli",
        "sam3d",
        "prepare",
        "--out",
        str(out),
        "--dinov2-code-url",
        f"{hub.url}/files/dinov2.zip",
        "--dinov2-weights-url",
        f"{hub.url}/files/{WEIGHTS}",
        *extra,
    ]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)


def read_offline(hf_home: Path, repo: str, filename: str) -> bytes:
    """What MoGe's from_pretrained does inside the server: hf_hub_download, hubs offline."""
    code = (
        "import sys; from huggingface_hub import hf_hub_download; "
        "sys.stdout.write(hf_hub_download(sys.argv[1], sys.argv[2]))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, "-c", code, repo, filename],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return Path(done.stdout).read_bytes()


@pytest.mark.slow
def test_prepare_lays_out_what_the_sam3d_backend_loads(hub, tmp_path, monkeypatch) -> None:
    out = tmp_path / "sam3d"
    done = prepare(hub, out, tmp_path / "home", GRANTED, "--s3", "s3://my-bucket/sam3d/")
    assert done.returncode == 0, done.stderr
    # upstream's layout (doc/setup.md: checkpoints/ -> checkpoints/hf/), nothing else fetched
    files = hub.repos[SAM3D].files
    assert (out / "checkpoints/hf/pipeline.yaml").read_bytes() == files["checkpoints/pipeline.yaml"]
    assert (out / "checkpoints/hf/ss_generator.ckpt").read_bytes() == BIG
    assert not (out / "README.md").exists() and hub.gets_of("/doc/figure.png") == []
    # torch.hub's offline layout for dinov2_vitl14_reg
    assert (out / "caches/torch/hub/facebookresearch_dinov2_main/hubconf.py").is_file()
    assert (out / "caches/torch/hub/checkpoints" / WEIGHTS).read_bytes() == BIG[::-1]
    # MoGe as an offline hf_hub_download finds it, from plain files (no links, no blobs)
    hf_home = out / "caches/huggingface"
    assert read_offline(hf_home, MOGE, "model.pt") == hub.repos[MOGE].files["model.pt"]
    assert not [p for p in out.rglob("*") if p.is_symlink()]
    assert not list(hf_home.rglob("blobs")) and not (hf_home / "hub/.locks").exists()
    # the manifest the server insists on, covering every file
    manifest = verify(out, "sam3d", strict=True)
    assert manifest is not None and manifest["applied"]["prepared"]["moge_repo"] == MOGE
    assert manifest["applied"]["prepared"]["sam3d_commit"] == hub.repos[SAM3D].commit
    # the next commands, with the prefix given
    assert f"gen3d package --model-dir {out} --out s3://my-bucket/sam3d/ --uncompressed" in (
        done.stdout
    )
    assert "gen3d deploy --name sam3d --mode async" in done.stdout
    assert "GB" in done.stdout  # sizes said before downloading

    # the sam3d backend's load-time checks, with the stand-in of upstream's pipeline
    import torch

    from gen3d.serve.backends.sam3d.adapter import Sam3DBackend
    from gen3d.serve.settings import Settings

    for var in ("HF_HUB_OFFLINE", "TORCH_HOME", "HF_HOME", "CONDA_PREFIX", "LIDRA_SKIP_INIT"):
        monkeypatch.delenv(var, raising=False)
    for var in ("ATTN_BACKEND", "SPARSE_ATTN_BACKEND", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(os, "environ", os.environ.copy())  # the adapter sets process vars
    monkeypatch.syspath_prepend(str(STANDIN))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA L40S")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 9))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    forget = [n for n in sys.modules if n.startswith("gen3d_sam3d") or n.startswith("sam3d_obj")]
    for name in forget:
        monkeypatch.delitem(sys.modules, name)
    backend = Sam3DBackend()
    try:
        backend.load(out, Settings(backend="sam3d", model_dir=out, device="cpu"))
        assert backend._inference.config_file == str(out / "checkpoints/hf/pipeline.yaml")
    finally:
        for name in [n for n in sys.modules if n.startswith(("gen3d_sam3d", "sam3d_obj"))]:
            del sys.modules[name]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("token", "words"),
    [
        (None, "no Hugging Face token: request access at https://huggingface.co/"),
        (PENDING, "access to facebook/sam-3d-objects has not been granted"),
        ("hf_typo", "refused the token"),
    ],
)
def test_without_a_token_or_access_it_fails_in_one_line(hub, tmp_path, token, words) -> None:
    out = tmp_path / "sam3d"
    done = prepare(hub, out, tmp_path / "home", token)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and words in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not (out / MANIFEST_FILE).exists()
    assert hub.gets_of("ss_generator.ckpt") == []


@pytest.mark.slow
@pytest.mark.heavy
def test_interrupted_downloads_resume_and_complete_files_are_not_fetched_again(
    hub, tmp_path
) -> None:
    out, home = tmp_path / "sam3d", tmp_path / "home"
    hub.cut_once.update({"checkpoints/ss_generator.ckpt", WEIGHTS})
    # each cut-off file stops its run, saying what to do; no manifest until complete
    for _ in range(2):
        stopped = prepare(hub, out, home, GRANTED)
        assert stopped.returncode == 1 and "run the same command again to resume" in (
            stopped.stderr
        ), stopped.stderr
        assert read_manifest(out) is None
    done = prepare(hub, out, home, GRANTED)
    assert done.returncode == 0, done.stderr
    assert (out / "checkpoints/hf/ss_generator.ckpt").read_bytes() == BIG
    assert (out / "caches/torch/hub/checkpoints" / WEIGHTS).read_bytes() == BIG[::-1]
    # the GET after each cut asked only for the bytes still missing
    for name in ("/checkpoints/ss_generator.ckpt", f"/{WEIGHTS}"):
        (first_get, resumed) = hub.gets_of(name)
        assert first_get is None and resumed not in (None, "bytes=0-"), hub.gets_of(name)
    verify(out, "sam3d", strict=True)
    # a third run fetches no file body again (metadata only)
    before = len(hub.gets_of("ss_generator.ckpt")), len(hub.gets_of(WEIGHTS))
    third = prepare(hub, out, home, GRANTED)
    assert third.returncode == 0, third.stderr
    assert (len(hub.gets_of("ss_generator.ckpt")), len(hub.gets_of(WEIGHTS))) == before
    verify(out, "sam3d", strict=True)


def test_moge_repo_is_read_from_pipeline_yaml_under_depth_model(tmp_path) -> None:
    from gen3d.model_opt.sam3d_weights import moge_repo_of

    config = tmp_path / "pipeline.yaml"
    config.write_text(PIPELINE.replace(MOGE, "someone/moge-other"))
    assert moge_repo_of(config) == "someone/moge-other"
    config.write_text("ss_generator:\n  pretrained_model_name_or_path: not/depth\n")
    assert moge_repo_of(config) is None  # only the depth model's counts


def test_a_repository_archive_that_escapes_its_folder_is_refused(tmp_path) -> None:
    from gen3d.model_opt.sam3d_weights import PrepareError, unpack_hub_archive

    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("facebookresearch-dinov2-x/hubconf.py", "")
        zf.writestr("facebookresearch-dinov2-x/../../escaped.py", "")
    with pytest.raises(PrepareError, match="not a single-folder repository archive"):
        unpack_hub_archive(archive, tmp_path / "hub" / "facebookresearch_dinov2_main")
    assert not (tmp_path / "escaped.py").exists()


def test_dinov2_is_copied_from_a_torch_home_where_torch_hub_ran(tmp_path) -> None:
    from gen3d.model_opt.sam3d_weights import PrepareError, fetch_dinov2

    home = tmp_path / "torch"
    code = home / "hub" / "facebookresearch_dinov2_main"
    code.mkdir(parents=True)
    (code / "hubconf.py").write_text("dependencies = ['torch']\n")
    out = tmp_path / "model"
    with pytest.raises(PrepareError, match=r"dinov2_vitl14_reg4_pretrain\.pth"):
        fetch_dinov2(out, home, "unused", "unused", print)  # no weights there yet
    (home / "hub" / "checkpoints").mkdir()
    (home / "hub" / "checkpoints" / WEIGHTS).write_bytes(b"dino")
    assert fetch_dinov2(out, home, "unused", "unused", print) == 0
    assert (out / "caches/torch/hub/checkpoints" / WEIGHTS).read_bytes() == b"dino"
    assert (out / "caches/torch/hub/facebookresearch_dinov2_main/hubconf.py").is_file()
