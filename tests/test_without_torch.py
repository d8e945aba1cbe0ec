"""The default backend, the demo and the AWS commands run without torch (it is the `torch`
extra; `make demo` does not install it): here torch is made unimportable for a subprocess
by a package of that name, first on its path, whose import fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def without_torch(tmp_path: Path) -> dict[str, str]:
    blocker = tmp_path / "blocked"
    (blocker / "torch").mkdir(parents=True)
    (blocker / "torch" / "__init__.py").write_text(
        "raise ImportError('torch is not installed (blocked by the test)')\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(blocker), env.get("PYTHONPATH", "")])
    return env


def gen3d(env: dict[str, str], *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gen3d.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_the_blocker_blocks(tmp_path: Path) -> None:
    code = "import torch"
    done = subprocess.run(
        [sys.executable, "-c", code], env=without_torch(tmp_path), capture_output=True, text=True
    )
    assert done.returncode == 1 and "blocked by the test" in done.stderr


@pytest.mark.slow
def test_the_demo_runs_without_torch(tmp_path: Path) -> None:
    env = without_torch(tmp_path)
    done = gen3d(env, "demo", "--out", str(tmp_path / "demo"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "silhouette mesh" in done.stdout
    assert (tmp_path / "demo" / "coffee.glb").stat().st_size > 1000
    assert (tmp_path / "demo" / "coffee_preview.png").is_file()


@pytest.mark.slow
def test_deploy_and_prepare_need_no_torch(tmp_path: Path) -> None:
    env = without_torch(tmp_path)
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/gen3d-sam3d:abc"
    role = "arn:aws:iam::123456789012:role/gen3d-t-sagemaker"
    args = ["--name", "t", "--mode", "async", "--image", image, "--role", role]
    args += ["--instance-type", "ml.g6e.xlarge", "--region", "us-east-1", "--dry-run"]
    done = gen3d(env, "deploy", *args)
    assert done.returncode == 0, done.stderr
    assert "backend sam3d" in done.stdout
    assert gen3d(env, "sam3d", "prepare", "--help").returncode == 0
