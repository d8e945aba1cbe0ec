"""`gen3d bench` input errors and the GPU script's behaviour on a machine without CUDA."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gen3d.benchmarks.loadgen import Target
from gen3d.cli.main import main

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "model", "--batch", "0"],
        ["bench", "model", "--precision", "fp8"],
        ["bench", "server", "--levels", "a,b"],
        ["bench", "server", "--duration-s", "-1"],
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "error: argument" in capsys.readouterr().err


def test_sam3d_without_model_dir_is_a_one_line_error(capsys) -> None:
    assert main(["bench", "model", "--backend", "sam3d"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "gen3d bench: the sam3d backend needs --model-dir (SAM 3D Objects checkpoints)"


def test_report_without_results_folder(tmp_path: Path, capsys) -> None:
    assert main(["bench", "report", "--results", str(tmp_path / "none")]) == 2
    assert "no results folder" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_suite_refuses_without_a_gpu(capsys) -> None:
    assert main(["bench", "all", "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_check_script_exits_clearly_without_cuda(tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    proc = subprocess.run(
        [str(REPO / "benchmarks" / "gpu_check.sh"), str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(tmp_path)},
    )
    assert proc.returncode == 2
    assert "no CUDA device" in proc.stderr
    assert not out.exists()  # nothing was run or written


def test_gpu_check_usage(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(REPO / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2 and "usage:" in proc.stderr


def test_load_generator_is_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback-only"):
        Target("http://10.0.0.5:8080", "/invocations", b"", {})
    Target("http://127.0.0.1:8080", "/invocations", b"", {})  # accepted
