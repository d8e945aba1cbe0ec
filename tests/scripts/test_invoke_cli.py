"""`gen3d invoke --url` and `make demo`'s script, run as a user runs them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import trimesh
from gen3d_testing import GEN3D, photo_and_mask, png_bytes, rgba_png
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def gen3d(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GEN3D, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_invoke_writes_the_file_and_a_preview(default_server, tmp_path) -> None:
    srv = default_server
    image, mask = photo_and_mask(120)
    (tmp_path / "photo.png").write_bytes(png_bytes(image))
    (tmp_path / "mask.png").write_bytes(png_bytes(mask.astype(np.uint8) * 255))
    out = tmp_path / "result.glb"
    result = gen3d(
        "invoke",
        "--url",
        srv.url,
        "--image",
        str(tmp_path / "photo.png"),
        "--mask",
        str(tmp_path / "mask.png"),
        "--out",
        str(out),
        "--preview",
        str(tmp_path / "preview.png"),
    )
    assert result.returncode == 0, result.stderr
    assert f"wrote {out} ({out.stat().st_size:,} bytes)" in result.stdout
    assert trimesh.load(out, force="mesh").is_watertight
    preview = Image.open(tmp_path / "preview.png")
    assert preview.size == (800, 400) and len(np.unique(np.asarray(preview)[..., 0])) > 20

    (tmp_path / "rgba.png").write_bytes(rgba_png(80))
    ply = gen3d(
        "invoke", "--url", srv.url, "--image", str(tmp_path / "rgba.png"), "--format", "ply"
    )
    assert ply.returncode == 0 and (tmp_path / "rgba_3d.ply").read_bytes()[:4] == b"ply\n"


@pytest.mark.slow  # a second or more on 2 cores: whole CLI runs through botocore
def test_invoke_reports_errors_plainly(default_server, tmp_path) -> None:
    srv = default_server
    missing = gen3d("invoke", "--url", srv.url, "--image", str(tmp_path / "nope.png"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    # one colour: no automatic mask can find an object in it
    blank = np.full((40, 40, 3), 128, np.uint8)
    (tmp_path / "photo.png").write_bytes(png_bytes(blank))
    refused = gen3d("invoke", "--url", srv.url, "--image", str(tmp_path / "photo.png"))
    assert refused.returncode == 1
    assert "HTTP 422 unprocessable" in refused.stderr
    assert "Traceback" not in refused.stderr
    down = gen3d("invoke", "--url", "http://127.0.0.1:9", "--image", str(tmp_path / "photo.png"))
    assert down.returncode == 1 and "could not reach" in down.stderr


@pytest.mark.slow
def test_demo_makes_a_watertight_glb_and_a_preview(tmp_path) -> None:
    result = subprocess.run(
        [GEN3D, "demo", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    glb, preview = Path(lines["3D file"]), Path(lines["preview"])
    mesh = trimesh.load(glb, force="mesh")
    assert mesh.is_watertight and mesh.visual.vertex_colors.shape == (len(mesh.vertices), 4)
    assert Image.open(preview).size == (800, 400)
