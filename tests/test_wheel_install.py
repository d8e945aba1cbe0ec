"""The project installs like a package: a wheel built from the checkout, installed into a
fresh venv outside it, runs the CLI and a server from site-packages alone (data files
through importlib.resources, no path into the checkout)."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import requests
from gen3d_testing import rgba_png

from gen3d.serve.local_server import ManagedProcess, free_port

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
NOT_SOURCE = (".git", ".venv", "out", "build", "dist", "*.egg-info", "__pycache__", "results")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with only the wheel installed; the dependencies (torch, flask, ...) come from
    the test interpreter's site-packages through a .pth line, so nothing is downloaded."""
    root = tmp_path_factory.mktemp("wheel")
    # a copy of the working tree, so the build's own folders never land in the checkout
    source = root / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(root / "dist"),
            str(source),
        ],
        check=True,
        cwd=root,
        capture_output=True,
    )
    (wheel,) = (root / "dist").glob("gen3d-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # The checkout's editable finder lives in a .pth of that site-packages; a directory
    # added by a .pth line has its own .pth files ignored, so the finder stays off here.
    (Path(purelib) / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True,
        capture_output=True,
    )
    return venv


def run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(venv / "bin" / "gen3d"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_wheel_holds_one_namespace_and_its_data_files(installed: Path) -> None:
    (wheel,) = (installed.parent / "dist").glob("gen3d-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("gen3d-")}
    assert tops == {"gen3d"}
    for data in ("gen3d/serve/openapi.yaml", "gen3d/aws/platform.json", "gen3d/cost/prices.json"):
        assert data in names


def test_the_cli_runs_from_site_packages(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [
            str(installed / "bin" / "python"),
            "-c",
            "import gen3d.serve; print(gen3d.serve.__file__)",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(installed)) and str(REPO) not in where
    assert run(installed, "--help", cwd=tmp_path).returncode == 0
    flavors = run(installed, "platform", "build-args", "cpu", cwd=tmp_path)
    assert flavors.returncode == 0 and "FLAVOR=cpu" in flavors.stdout
    cost = run(
        installed,
        "cost",
        "--images-per-month",
        "100",
        "--seconds-per-image",
        "60",
        "--format",
        "json",
        cwd=tmp_path,
    )
    assert cost.returncode == 0, cost.stderr
    assert json.loads(cost.stdout)
    deploy = run(
        installed,
        "deploy",
        "--dry-run",
        "--name",
        "w",
        "--mode",
        "serverless",
        "--image",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/gen3d-cpu:abc",
        "--role",
        "arn:aws:iam::123456789012:role/gen3d-w-sagemaker",
        "--region",
        "us-east-1",
        cwd=tmp_path,
    )
    assert deploy.returncode == 0, deploy.stderr
    assert "nothing was called" in deploy.stdout


def test_a_server_starts_from_the_installed_package(installed: Path, tmp_path: Path) -> None:
    port = free_port()
    server = ManagedProcess(
        [str(installed / "bin" / "gen3d"), "serve", "--port", str(port)],
        port,
        tmp_path / "server.log",
        env={"PYTHONPATH": ""},
    )
    try:
        server.wait_ready(60)
        response = requests.post(
            server.url + "/invocations",
            data=rgba_png(48),
            headers={"Content-Type": "image/png"},
            timeout=30,
        )
        assert response.status_code == 200 and response.content[:4] == b"glTF"
        # gen3d serve's pages and the vendored viewer (`make ui-assets`) are package data too
        for path in ("/", "/ui/static/tryit.js", "/ui/static/vendor/model-viewer.min.js", "/docs/"):
            assert requests.get(server.url + path, timeout=10).status_code == 200, path
    finally:
        server.stop(10)
