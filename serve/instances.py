"""GPU per SageMaker instance family: the one table `gen3d deploy` (does the backend fit?),
`gen3d plan-memory` (--gpu) and `gen3d cost` (can this instance run the backend?) read.

Every instance of a family carries the same GPU model; sizes differ in GPU count and host
RAM, and a model runs on one GPU, so the per-GPU memory is what decides. Nominal memory is
NVIDIA's datasheet figure; `usable_gib` is what the driver reports as total (less than
nominal: ECC and the driver's reservation), rounded down. Sources: the Amazon EC2
accelerated-computing instance pages (GPU model and memory per family; host RAM of the
sizes listed in HOST_RAM_GIB), NVIDIA's datasheets (T4, A10G, L4, L40S, V100, A100, H100,
H200) and CUDA's compute-capability table (bf16 needs compute capability >= 8.0).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuModel:
    model: str
    memory_gb: float  # nominal, per GPU
    usable_gib: float  # what the driver reports as total, per GPU
    compute_capability: tuple[int, int]

    @property
    def bf16(self) -> bool:
        return self.compute_capability >= (8, 0)


T4 = GpuModel("NVIDIA T4", 16, 15.0, (7, 5))
A10G = GpuModel("NVIDIA A10G", 24, 22.0, (8, 6))
L4 = GpuModel("NVIDIA L4", 24, 22.0, (8, 9))
L40S = GpuModel("NVIDIA L40S", 48, 44.0, (8, 9))
V100 = GpuModel("NVIDIA V100", 16, 15.5, (7, 0))
A100_40 = GpuModel("NVIDIA A100 40GB", 40, 39.0, (8, 0))
A100_80 = GpuModel("NVIDIA A100 80GB", 80, 79.0, (8, 0))
H100 = GpuModel("NVIDIA H100", 80, 79.0, (9, 0))
H200 = GpuModel("NVIDIA H200", 141, 139.0, (9, 0))

GPU_BY_FAMILY: dict[str, GpuModel] = {
    "ml.g4dn": T4,
    "ml.g5": A10G,
    "ml.g6": L4,
    "ml.g6e": L40S,
    "ml.p3": V100,
    "ml.p4d": A100_40,
    "ml.p4de": A100_80,
    "ml.p5": H100,
    "ml.p5e": H200,
    "ml.p5en": H200,
}

# Host memory (GiB) of every size of the GPU families above that SageMaker hosts (botocore's
# ProductionVariantInstanceType): the Amazon EC2 accelerated-computing instance pages
# (G4dn, G5, G6, G6e, P3, P4, P5 "Instance details": memory per size).
_G5_G6 = {
    "xlarge": 16, "2xlarge": 32, "4xlarge": 64, "8xlarge": 128,
    "12xlarge": 192, "16xlarge": 256, "24xlarge": 384, "48xlarge": 768,
}  # fmt: skip
HOST_RAM_GIB_BY_FAMILY: dict[str, dict[str, float]] = {
    "ml.g4dn": {
        "xlarge": 16, "2xlarge": 32, "4xlarge": 64, "8xlarge": 128, "12xlarge": 192,
        "16xlarge": 256,
    },
    "ml.g5": _G5_G6,
    "ml.g6": _G5_G6,
    "ml.g6e": {
        "xlarge": 32, "2xlarge": 64, "4xlarge": 128, "8xlarge": 256, "12xlarge": 384,
        "16xlarge": 512, "24xlarge": 768, "48xlarge": 1536,
    },
    "ml.p3": {"2xlarge": 61, "8xlarge": 244, "16xlarge": 488},
    "ml.p4d": {"24xlarge": 1152},
    "ml.p4de": {"24xlarge": 1152},
    "ml.p5": {"4xlarge": 256, "48xlarge": 2048},
    "ml.p5e": {"48xlarge": 2048},
    "ml.p5en": {"48xlarge": 2048},
}  # fmt: skip
HOST_RAM_GIB: dict[str, float] = {
    f"{fam}.{size}": gib
    for fam, sizes in HOST_RAM_GIB_BY_FAMILY.items()
    for size, gib in sizes.items()
}
GIB = 1 << 30


# GPUs per instance size where a family has more than one (every other size has one).
# Source: the Amazon EC2 accelerated-computing instance pages (G4dn, G5, G6, G6e, P3, P4,
# P5): in the G families the 12xlarge and 24xlarge sizes carry 4 GPUs and the 48xlarge 8;
# p3.8xlarge 4 and p3.16xlarge 8; the P4 and P5 24/48xlarge 8. Every size named here is
# a SageMaker ProductionVariantInstanceType (tests/scripts/test_aws_deploy.py checks).
MULTI_GPU_SIZES: dict[str, dict[str, int]] = {
    "ml.g4dn": {"12xlarge": 4},
    "ml.g5": {"12xlarge": 4, "24xlarge": 4, "48xlarge": 8},
    "ml.g6": {"12xlarge": 4, "24xlarge": 4, "48xlarge": 8},
    "ml.g6e": {"12xlarge": 4, "24xlarge": 4, "48xlarge": 8},
    "ml.p3": {"8xlarge": 4, "16xlarge": 8},
    "ml.p4d": {"24xlarge": 8},
    "ml.p4de": {"24xlarge": 8},
    "ml.p5": {"48xlarge": 8},
    "ml.p5e": {"48xlarge": 8},
    "ml.p5en": {"48xlarge": 8},
}


def family(instance_type: str) -> str:
    """'ml.g5.xlarge' -> 'ml.g5'."""
    return instance_type.rsplit(".", 1)[0]


def gpu_of(instance_type: str) -> GpuModel | None:
    """The instance's GPU, or None for CPU instances (and GPU families not listed)."""
    return GPU_BY_FAMILY.get(family(instance_type))


def is_gpu_instance(instance_type: str) -> bool:
    return gpu_of(instance_type) is not None


def gpu_count(instance_type: str) -> int:
    """GPUs on one instance of this type: 0 for CPU instances."""
    if not is_gpu_instance(instance_type):
        return 0
    size = instance_type.rsplit(".", 1)[1]
    return MULTI_GPU_SIZES.get(family(instance_type), {}).get(size, 1)


# SAM 3D Objects: upstream asks for "an NVIDIA GPU with at least 32 GB of VRAM"
# (facebookresearch/sam-3d-objects doc/setup.md); with GEN3D_STAGE_OFFLOAD only the running
# stage is on the GPU, which fits a 24 GB card (docs/model_opt.md, gen3d plan-memory), and
# every other stage waits in host memory: about 24 GB of it (the project's estimate of the
# serving process with all stages resident, the cost model's sam3d memory_gb; gen3d
# plan-memory computes the same from the checkpoints' headers). An ml.g5.xlarge or
# ml.g6.xlarge has a 24 GB GPU but 16 GiB of host memory: refused.
SAM3D_FULL_GB = 32
SAM3D_STAGED_GB = 24
SAM3D_HOST_GB = 24.0  # host memory sam3d needs with stage offload (GB)
# The single-GPU types deploy names for sam3d, cheapest first (each has a price in
# scripts/cost/prices.json; tests/scripts/test_sizing.py checks both).
SAM3D_SUGGESTED = ("ml.g6.2xlarge", "ml.g5.2xlarge", "ml.g6e.xlarge")


def host_ram_gb(instance_type: str) -> float | None:
    gib = HOST_RAM_GIB.get(instance_type)
    return None if gib is None else gib * GIB / 1e9


def _describe(instance_type: str) -> str:
    gpu = gpu_of(instance_type)
    host = HOST_RAM_GIB.get(instance_type)
    offload = " with stage offload" if gpu and gpu.memory_gb < SAM3D_FULL_GB else ""
    return (
        f"{instance_type} ({gpu.model if gpu else '?'} {gpu.memory_gb if gpu else 0:g} GB, "
        f"{host:g} GiB host{offload})"
    )


def sam3d_suggestion() -> str:
    return "Use " + ", ".join(_describe(t) for t in SAM3D_SUGGESTED)


SAM3D_SUGGESTION = sam3d_suggestion()


@dataclass(frozen=True)
class Fit:
    """Whether `backend` fits `instance_type` (GPU and host memory): `refusal` says why
    not; `offload` is True when it fits only with stage offload."""

    refusal: str | None = None
    offload: bool = False


def backend_fit(backend: str, instance_type: str) -> Fit:
    gpu = gpu_of(instance_type)
    if backend != "sam3d" or gpu is None:
        return Fit()
    if gpu.memory_gb >= SAM3D_FULL_GB:
        return Fit()
    if gpu.memory_gb >= SAM3D_STAGED_GB:
        host = host_ram_gb(instance_type)
        if host is not None and host < SAM3D_HOST_GB:
            return Fit(
                refusal=f"backend sam3d on a {gpu.memory_gb:g} GB GPU needs stage offload, "
                f"which keeps every stage in host memory (about {SAM3D_HOST_GB:g} GB); "
                f"{instance_type} has {HOST_RAM_GIB[instance_type]:g} GiB. "
                f"{SAM3D_SUGGESTION}",
                offload=True,
            )
        return Fit(offload=True)
    return Fit(
        refusal=f"backend sam3d needs a GPU with at least {SAM3D_STAGED_GB} GB "
        f"({SAM3D_FULL_GB} GB without stage offload); {instance_type} has one "
        f"{gpu.model} with {gpu.memory_gb:g} GB. {SAM3D_SUGGESTION}"
    )
