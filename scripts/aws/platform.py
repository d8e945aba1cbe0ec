"""Image flavors and the CUDA <-> SageMaker inference-AMI pairing, read from
platform.json beside this module (the one place the Makefile, the Dockerfile build and the
deploy code take them from). `gen3d platform build-args FLAVOR` prints a flavor's
`docker build` arguments; `gen3d platform check` verifies every GPU flavor's CUDA runs on
its AMI's driver.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from gen3d.serve import instances

PLATFORM_RESOURCE = "platform.json"  # package data of gen3d.aws

GPU_INSTANCE_FAMILIES = tuple(instances.GPU_BY_FAMILY)


@cache
def platform() -> dict[str, Any]:
    return json.loads(resources.files(__package__).joinpath(PLATFORM_RESOURCE).read_text())


def flavor_names() -> list[str]:
    return list(platform()["flavors"])


def flavor(name: str | None = None) -> dict[str, Any]:
    """One flavor's entry (default: the file's `default_flavor`)."""
    name = name or platform()["default_flavor"]
    flavors = platform()["flavors"]
    if name not in flavors:
        raise ValueError(f"unknown image flavor {name!r}: choose one of {', '.join(flavors)}")
    return flavors[name]


# What each image lacks for the backends it does not list (the Dockerfile's stages).
FLAVOR_LACKS = {
    "cpu": "no torch, no GPU libraries",
    "gpu": "no SAM 3D Objects or its CUDA extensions",
    "sam3d": "SAM 3D's pinned torch 2.5.1 stack, loaded for sam3d alone",
}


def default_backend(flavor_name: str | None) -> str:
    """The backend an image of this flavor serves unless told otherwise: the first of its
    `backends` (sam3d for the sam3d image, silhouette for cpu and gpu); silhouette for an
    image whose flavor is unknown."""
    if flavor_name is None:
        return "silhouette"
    return flavor(flavor_name)["backends"][0]


def backend_problem(flavor_name: str | None, backend: str) -> str | None:
    """Why an image of this flavor cannot serve `backend` (None when it can, or when the
    flavor is unknown): the cpu image has no torch, the gpu image no SAM 3D, and the sam3d
    image is built, and sized, for SAM 3D alone."""
    if flavor_name is None:
        return None
    runs = flavor(flavor_name)["backends"]
    if backend in runs:
        return None
    hosts = [name for name, entry in platform()["flavors"].items() if backend in entry["backends"]]
    return (
        f"backend {backend} does not run on the {flavor_name} image, which serves "
        f"{' or '.join(runs)} only ({FLAVOR_LACKS[flavor_name]}); "
        + (f"deploy a {' or '.join(hosts)} image for {backend}, or " if hosts else "")
        + f"leave --backend out to serve {runs[0]}"
    )


def is_gpu_instance(instance_type: str) -> bool:
    return instances.is_gpu_instance(instance_type)


def inference_ami_version(instance_type: str, flavor_name: str | None = None) -> str | None:
    """The InferenceAmiVersion a variant on `instance_type` must set (None for CPU).

    Without an override SageMaker boots ml.g4dn/ml.g5 with driver 470 (CUDA 11.4), which
    cannot run any of our CUDA images, so GPU variants always set it explicitly."""
    if not is_gpu_instance(instance_type):
        return None
    if flavor_name is None:
        return platform()["inference_ami_version"]
    return flavor(flavor_name)["inference_ami_version"] or platform()["inference_ami_version"]


def _major_minor(version: str) -> tuple[int, int]:
    parts = version.split(".")
    return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0


def runs_on_driver(cuda_version: str, driver_cuda: str) -> bool:
    """True when a CUDA `cuda_version` runtime runs on a driver whose CUDA is `driver_cuda`.

    Within one major version, CUDA's minor version compatibility lets a newer-minor runtime
    run on an older-minor driver (12.4 on a 12.2 driver) for code compiled to the GPU's
    own architecture, which our images ship (NVIDIA, "CUDA Compatibility", minor version
    compatibility, from CUDA 11.1). Across major versions it needs the forward-compat
    package, which the SageMaker AMIs do not mount: refused."""
    runtime, driver = _major_minor(cuda_version), _major_minor(driver_cuda)
    return runtime <= driver or runtime[0] == driver[0]


def cuda_runs_on_ami(cuda_version: str, ami: str) -> bool:
    """True when a CUDA `cuda_version` runtime runs on `ami`'s driver (runs_on_driver)."""
    amis = platform()["amis"]
    if ami not in amis:
        raise ValueError(f"unknown InferenceAmiVersion {ami!r}: known are {', '.join(amis)}")
    return runs_on_driver(cuda_version, amis[ami]["max_cuda"])


def gpu_problem(instance_type: str, flavor_name: str | None) -> str | None:
    """Why a flavor's CUDA cannot drive `instance_type`'s GPU (None when it can): CUDA 13
    dropped GPUs below compute capability 7.5 (Volta, ml.p3)."""
    gpu = instances.gpu_of(instance_type)
    if gpu is None or flavor_name is None:
        return None
    cuda = flavor(flavor_name)["cuda_version"]
    if cuda is None:
        return None
    minimum = platform()["min_compute_capability_by_cuda_major"].get(cuda.split(".")[0])
    if minimum and gpu.compute_capability < _major_minor(minimum):
        cc = ".".join(map(str, gpu.compute_capability))
        return (
            f"the {flavor_name} image is built for CUDA {cuda}, which supports GPUs of compute "
            f"capability {minimum} and newer; {instance_type} has a {gpu.model} ({cc}). "
            "Use ml.g4dn, ml.g5, ml.g6, ml.g6e or ml.p4d/ml.p5"
        )
    return None


def transform_ami_version(instance_type: str, flavor_name: str | None) -> str | None:
    """TransformAmiVersion for a batch job on `instance_type` (None on CPU instances).

    Without it, GPU batch jobs get driver 470 (CUDA 11.4), which runs none of our CUDA
    images; the newest batch AMI is chosen. Raises ValueError (with the reason) when the
    flavor's CUDA is newer than every batch AMI's driver supports."""
    if not is_gpu_instance(instance_type):
        return None
    amis = platform()["batch_amis"]
    newest = max(amis, key=lambda name: _major_minor(amis[name]["max_cuda"]))
    cuda = flavor(flavor_name)["cuda_version"] if flavor_name else None
    if cuda is not None and not runs_on_driver(cuda, amis[newest]["max_cuda"]):
        usable = [
            name
            for name, entry in platform()["flavors"].items()
            if entry["cuda_version"]
            and runs_on_driver(entry["cuda_version"], amis[newest]["max_cuda"])
        ]
        raise ValueError(
            f"the {flavor_name} image needs CUDA {cuda}, but batch transform's newest GPU AMI "
            f"({newest}, driver {amis[newest]['nvidia_driver']}) supports CUDA "
            f"{amis[newest]['max_cuda'].split('.')[0]}.x at most. Run batch on a CPU instance, "
            + (f"use the {' or '.join(usable)} flavor, " if usable else "")
            + "or use an async endpoint"
        )
    return newest


def pairing_problems() -> list[str]:
    """Every GPU flavor whose CUDA does not run on its AMI (empty when all pair up)."""
    problems = []
    for name, entry in platform()["flavors"].items():
        cuda, ami = entry["cuda_version"], entry["inference_ami_version"]
        if cuda is None:
            continue
        if ami is None:
            problems.append(f"{name}: CUDA {cuda} but no inference_ami_version")
        elif not cuda_runs_on_ami(cuda, ami):
            max_cuda = platform()["amis"][ami]["max_cuda"]
            problems.append(f"{name}: CUDA {cuda} is newer than {ami}'s CUDA {max_cuda}")
    return problems


def build_args(flavor_name: str | None = None) -> list[str]:
    """`docker build` arguments that select a flavor's base images and image env."""
    name = flavor_name or platform()["default_flavor"]
    entry = flavor(name)
    values = {
        "FLAVOR": name,
        "BASE_IMAGE": entry["base_image"],
        "BUILDER_IMAGE": entry["builder_image"],
        **entry.get("build_args", {}),
    }
    args: list[str] = []
    for key, value in values.items():
        args += ["--build-arg", f"{key}={value}"]
    return args
