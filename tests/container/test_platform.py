"""gen3d/aws/platform.json: flavors, CUDA <-> InferenceAmiVersion pairing, pinned requirements."""

from __future__ import annotations

import re
from pathlib import Path

import botocore.session
import pytest

from gen3d.aws import platform
from gen3d.cli.main import main as gen3d_main

ROOT = Path(__file__).resolve().parents[2]


def botocore_inference_amis() -> list[str]:
    model = botocore.session.get_session().get_service_model("sagemaker")
    return model.shape_for("ProductionVariantInferenceAmiVersion").enum


def test_ami_table_matches_botocore_and_its_documented_cuda_versions() -> None:
    """Every GPU AMI botocore knows is in our table with the driver/CUDA its docs give."""
    model = botocore.session.get_session().get_service_model("sagemaker")
    member = model.shape_for("ProductionVariant").members["InferenceAmiVersion"]
    doc = re.sub(r"<[^>]+>", " ", member.documentation)
    amis = platform.platform()["amis"]
    gpu_amis = [a for a in botocore_inference_amis() if "-gpu-" in a]
    assert sorted(gpu_amis) == sorted(amis)
    for ami, entry in amis.items():
        section = doc.split(ami, 1)[1][:300]
        assert re.search(rf"NVIDIA driver version:\s*{entry['nvidia_driver']}\b", section), ami
        assert re.search(rf"CUDA version:\s*{re.escape(entry['max_cuda'])}\b", section), ami


def test_every_gpu_flavor_pairs_with_its_ami() -> None:
    assert platform.pairing_problems() == []
    for name in platform.flavor_names():
        entry = platform.flavor(name)
        if entry["cuda_version"] is None:
            assert entry["inference_ami_version"] is None
        else:
            assert entry["inference_ami_version"] in botocore_inference_amis()


@pytest.mark.parametrize(
    ("cuda", "ami", "runs"),
    [
        ("13.0", "al2023-ami-sagemaker-inference-gpu-4-1", True),
        ("12.1", "al2023-ami-sagemaker-inference-gpu-4-1", True),
        ("13.0", "al2-ami-sagemaker-inference-gpu-3-1", False),
        ("12.4.1", "al2-ami-sagemaker-inference-gpu-3-1", True),
        # CUDA minor version compatibility: 12.x runtimes run on any 12.x driver (>= 525)
        # without the compat package (docs.nvidia.com/deploy/cuda-compatibility,
        # "Minor Version Compatibility"); only a new major needs a newer driver.
        ("12.4", "al2-ami-sagemaker-inference-gpu-2", True),
        ("13.0", "al2-ami-sagemaker-inference-gpu-2", False),
        ("12.2", "al2-ami-sagemaker-inference-gpu-2-1", True),
    ],
)
def test_cuda_runs_on_ami(cuda: str, ami: str, runs: bool) -> None:
    assert platform.cuda_runs_on_ami(cuda, ami) is runs


def test_unknown_ami_and_flavor_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown InferenceAmiVersion"):
        platform.cuda_runs_on_ami("12.1", "al2-ami-sagemaker-inference-gpu-9")
    with pytest.raises(ValueError, match="unknown image flavor 'tpu'"):
        platform.flavor("tpu")


def test_inference_ami_version_for_instances() -> None:
    assert (
        platform.inference_ami_version("ml.g5.xlarge")
        == platform.platform()["inference_ami_version"]
    )
    assert (
        platform.inference_ami_version("ml.g4dn.xlarge", "sam3d")
        == (platform.flavor("sam3d")["inference_ami_version"])
    )
    assert platform.inference_ami_version("ml.m5.large") is None
    assert platform.inference_ami_version("ml.c7i.xlarge", "gpu") is None


def test_build_args_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert gen3d_main(["platform", "build-args", "cpu"]) == 0
    out = capsys.readouterr().out.split()
    assert "FLAVOR=cpu" in out and "BASE_IMAGE=debian:bookworm-slim" in out
    assert gen3d_main(["platform", "build-args", "sam3d"]) == 0
    assert "CONDA_PREFIX=/usr/local/cuda" in capsys.readouterr().out
    assert gen3d_main(["platform", "build-args", "nope"]) == 2
    assert "unknown image flavor" in capsys.readouterr().err
    assert gen3d_main(["platform", "check"]) == 0


# ---------------------------------------------------------------- requirements files

PIN = re.compile(r"^[A-Za-z0-9_.\-\[\],]+==[\w.+\-]+$")
GIT_PIN = re.compile(r"^[A-Za-z0-9_.\-]+ ?@ ?git\+https://\S+@[0-9a-f]{40}$")


def requirement_lines(path: Path) -> list[str]:
    """Requirements without comments; in a hash-pinned lock each requirement's
    continuation lines are joined and its --hash options dropped."""
    lines = []
    for raw in path.read_text().replace("\\\n", " ").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            lines.append(re.sub(r"\s*--hash=\S+", "", line).strip())
    return lines


@pytest.mark.parametrize("path", sorted((ROOT / "container").glob("requirements-*.txt")))
def test_every_requirement_is_pinned(path: Path) -> None:
    for line in requirement_lines(path):
        if line.startswith(("--extra-index-url ", "--find-links ", "-r ")):
            continue
        assert PIN.match(line) or GIT_PIN.match(line), f"{path.name}: {line!r} is not pinned"


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in requirement_lines(path):
        if "==" in line:
            name, _, version = line.partition("==")
            out[name.lower().replace("_", "-")] = version
    return out


def test_cpu_flavor_has_no_torch_and_gpu_torch_matches_platform() -> None:
    cpu = pins(ROOT / "container" / "requirements-cpu.txt")
    assert "torch" not in cpu
    for needed in (
        "numpy",
        "scipy",
        "scikit-image",
        "pillow",
        "flask",
        "gunicorn",
        "trimesh",
        "safetensors",
        "opencv-python-headless",  # the automatic mask
        "fast-simplification",  # options.target_faces
    ):
        assert needed in cpu, needed
    # Optional extras stay out of the serverless image (docs/image.md: +209 MB, +80 MB).
    assert "usd-core" not in cpu and "onnxruntime" not in cpu
    gpu_file = ROOT / "container" / "requirements-gpu.txt"
    assert "-r requirements-cpu.txt" in requirement_lines(gpu_file)
    assert pins(gpu_file)["torch"] == platform.flavor("gpu")["torch"]


def test_sam3d_torch_and_cuda_runtime_match_the_platform() -> None:
    """The sam3d lock is resolved from PyPI alone: torch 2.5.1 there is the CUDA 12.4
    build (upstream's +cu121 comes from PyTorch's own index) and brings its CUDA runtime
    as pip packages; the images and the AMI pairing follow that runtime."""
    sam3d = pins(ROOT / "container" / "requirements-sam3d.txt")
    entry = platform.flavor("sam3d")
    assert sam3d["torch"] == entry["torch"]
    runtime = sam3d["nvidia-cuda-runtime-cu12"]
    assert runtime.split(".")[:2] == entry["cuda_version"].split(".")[:2]
    assert platform.cuda_runs_on_ami(runtime, entry["inference_ami_version"])
    for image in (entry["base_image"], entry["builder_image"]):
        assert f":{entry['cuda_version']}." in image, image  # nvcc = torch's CUDA
    text = (ROOT / "container" / "requirements-sam3d.txt").read_text()
    assert "download.pytorch.org" not in text
    ext_text = (ROOT / "container" / "requirements-sam3d-ext.txt").read_text()
    assert f"torch-{entry['torch']}_cu121.html" in ext_text  # kaolin's wheels, same torch
    ext = requirement_lines(ROOT / "container" / "requirements-sam3d-ext.txt")
    assert any(line.startswith("pytorch3d @ git+") for line in ext)
    assert any(line.startswith("gsplat @ git+") for line in ext)
    assert "kaolin==0.17.0" in ext


def test_gpu_cuda_runtime_pin_is_the_platform_cuda_and_runs_on_the_ami() -> None:
    """The CUDA runtime torch loads in the gpu image (a pip package) is the one the AMI
    pairing was checked for: bumping torch without bumping platform.json fails here."""
    gpu = pins(ROOT / "container" / "requirements-gpu.txt")
    entry = platform.flavor("gpu")
    runtime = gpu["nvidia-cuda-runtime"]
    assert runtime.split(".")[:2] == entry["cuda_version"].split(".")[:2]
    assert gpu["cuda-toolkit"].split(".")[:2] == entry["cuda_version"].split(".")[:2]
    assert platform.cuda_runs_on_ami(runtime, entry["inference_ami_version"])
    assert any(name.endswith("-cu13") for name in gpu)  # cuDNN/NCCL builds for CUDA 13
