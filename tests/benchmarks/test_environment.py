"""Environment fingerprint: every field an independent source can confirm."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import torch

from gen3d.benchmarks.environment import device_slug, fingerprint


def test_cpu_fingerprint_matches_the_machine() -> None:
    env = fingerprint("cpu")
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    if model:
        assert env["cpu_model"] == model.group(1).strip()
    assert env["cpu_cores"] == os.cpu_count()
    assert 1 <= env["cpu_cores_usable"] <= env["cpu_cores"]
    assert env["torch"] == torch.__version__
    assert env["python"] == platform.python_version()
    assert len(env["load_average"]) == 3
    assert env["device"] == "cpu"
    # a CPU run names no GPU and no driver, rather than guessing one
    assert env["gpu_name"] is None and env["driver"] is None
    assert env["git_commit"]  # this is a git checkout
    assert device_slug(env) == "cpu"


def test_instance_type_from_argument_or_environment(monkeypatch) -> None:
    monkeypatch.setenv("GEN3D_INSTANCE_TYPE", "ml.g5.xlarge")
    assert fingerprint("cpu")["instance_type"] == "ml.g5.xlarge"
    assert fingerprint("cpu", "ml.g4dn.xlarge")["instance_type"] == "ml.g4dn.xlarge"


def test_gpu_results_go_to_a_folder_named_after_the_gpu() -> None:
    env = {"device": "cuda", "gpu_name": "NVIDIA A10G"}
    assert device_slug(env) == "cuda-nvidia-a10g"
    assert device_slug({"device": "cuda", "gpu_name": "Tesla T4"}) == "cuda-tesla-t4"
