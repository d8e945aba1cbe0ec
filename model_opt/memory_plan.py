"""`gen3d plan-memory`: which precision x INT8 x residency combinations fit a GPU.

Weights per stage come from safetensors headers (the JSON before the data: dtype and
shape of every tensor), so nothing is loaded. Residency "all" keeps every stage on the
GPU; "stage" keeps only the running stage there (GEN3D_STAGE_OFFLOAD for sam3d), the
others wait in host memory, which is then the constraint: an ml.g4dn.xlarge or
ml.g5.xlarge has 16 GiB of RAM.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gen3d.serve import instances

GIB = 1 << 30
DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}
PRECISION_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_gib: float  # what the driver reports as total
    bf16: bool
    host_ram_gib: float  # of the smallest SageMaker instance carrying it
    instance: str


def gpu_of_instance(instance_type: str) -> Gpu:
    """The GPU of a SageMaker instance type, from the table deploy and the cost model
    read too (gen3d.serve.instances)."""
    gpu = instances.gpu_of(instance_type)
    if gpu is None or instance_type not in instances.HOST_RAM_GIB:
        known = ", ".join(t for t in instances.HOST_RAM_GIB if instances.gpu_of(t))
        raise ValueError(
            f"{instance_type}: not in the instance table ({known}); give --gpu as a size in "
            "GiB and --host-ram-gib"
        )
    host_ram = instances.HOST_RAM_GIB[instance_type]
    return Gpu(gpu.model, gpu.usable_gib, gpu.bf16, host_ram, instance_type)


GPUS = {
    "t4": gpu_of_instance("ml.g4dn.xlarge"),
    "a10g": gpu_of_instance("ml.g5.xlarge"),
    "l4": gpu_of_instance("ml.g6.xlarge"),
    "l40s": gpu_of_instance("ml.g6e.xlarge"),
}
CUDA_CONTEXT_GIB = 0.6  # CUDA context + cuBLAS workspaces, per process (typical)
HOST_PROCESS_GIB = 2.0  # python, torch and CUDA libraries, server, page cache slack


def safetensors_header(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        if length > 100_000_000:
            raise ValueError(f"{path}: implausible safetensors header ({length} bytes)")
        header = json.loads(fh.read(length))
    header.pop("__metadata__", None)
    return header


def safetensors_tensor_bytes(path: Path) -> dict[str, int]:
    return {
        name: info["data_offsets"][1] - info["data_offsets"][0]
        for name, info in safetensors_header(path).items()
    }


@dataclass
class StageWeights:
    """Element counts of one stage: tensors with ndim >= 2 (INT8-able: Linear weights by
    the engine, convs and embeddings by int8 storage) and the rest (biases, norms)."""

    matrix_params: int = 0
    other_params: int = 0
    stored_bytes: int = 0
    fixed_bytes: int = 0  # tensors that are no weights and keep their dtype (index grids)

    def bytes_at(self, precision: str, int8: bool) -> int:
        p = PRECISION_BYTES[precision]
        if int8:  # int8 tensors + a scale per row/channel (~1 per 64), the rest at precision
            weights = self.matrix_params + (self.matrix_params // 64) * 4 + self.other_params * p
        else:
            weights = (self.matrix_params + self.other_params) * p
        return weights + self.fixed_bytes


def stage_weights(files: list[Path], stage_of: Any) -> dict[str, StageWeights]:
    stages: dict[str, StageWeights] = {}
    for path in files:
        for name, info in safetensors_header(path).items():
            count = 1
            for dim in info["shape"]:
                count *= dim
            stage = stages.setdefault(stage_of(path, name), StageWeights())
            if len(info["shape"]) >= 2:
                stage.matrix_params += count
            else:
                stage.other_params += count
            stage.stored_bytes += info["data_offsets"][1] - info["data_offsets"][0]
    return stages


def proxy_stages(model_dir: Path) -> dict[str, StageWeights]:
    return stage_weights([model_dir / "proxy.safetensors"], lambda _p, n: n.split(".", 1)[0])


def flexicubes_grid_bytes(resolution: int) -> int:
    """SAM 3D's mesh decoder builds a dense int64 grid at construction, kept in plain
    attributes (upstream cube2mesh.py:64, utils_cube.construct_dense_grid): (4r)^3 cubes
    x 8 corner ids and (4r + 1)^3 vertices x 3 coordinates, r = slat_decoder_mesh.yaml's
    resolution (96 as published: 4.65 GiB)."""
    res = 4 * resolution
    return (res**3 * 8 + (res + 1) ** 3 * 3) * 8


def sam3d_stages(model_dir: Path) -> dict[str, StageWeights]:
    """One stage per safetensors checkpoint file (SAM 3D ships one per model), plus the
    mesh decoder's grid when its config is in the model dir."""
    files = sorted(model_dir.rglob("*.safetensors"))
    if not files:
        raise ValueError(f"no *.safetensors checkpoints under {model_dir}")
    stages = stage_weights(files, lambda p, _n: p.stem)
    for config in sorted(model_dir.rglob("slat_decoder_mesh.yaml"))[:1]:
        found = re.search(r"^resolution:\s*(\d+)\s*$", config.read_text(), re.MULTILINE)
        if found:
            stage = stages.setdefault("slat_decoder_mesh", StageWeights())
            stage.fixed_bytes += flexicubes_grid_bytes(int(found.group(1)))
    return stages


def parse_gpu(value: str) -> Gpu:
    if value.lower() in GPUS:
        return GPUS[value.lower()]
    if value.startswith("ml."):
        return gpu_of_instance(value)
    try:
        gib = float(value)
    except ValueError:
        raise ValueError(
            f"--gpu {value!r}: use {', '.join(GPUS)}, an instance type (ml.g6e.xlarge) or a "
            "size in GiB"
        ) from None
    if gib <= 0:
        raise ValueError("--gpu size must be positive")
    return Gpu(f"{gib:g} GiB GPU", gib, True, 16.0, "custom")


def plan(
    stages: dict[str, StageWeights],
    gpu: Gpu,
    activations_gib: float,
    host_ram_gib: float | None = None,
) -> list[dict[str, Any]]:
    host = host_ram_gib if host_ram_gib is not None else gpu.host_ram_gib
    rows = []
    for precision in PRECISION_BYTES:
        for int8 in (False, True):
            per_stage = {n: s.bytes_at(precision, int8) / GIB for n, s in stages.items()}
            total = sum(per_stage.values())
            for residency in ("all", "stage"):
                weights_gpu = total if residency == "all" else max(per_stage.values())
                gpu_need = weights_gpu + activations_gib + CUDA_CONTEXT_GIB
                host_need = HOST_PROCESS_GIB + (total if residency == "stage" else 0.0)
                reasons = []
                if precision == "bf16" and not gpu.bf16:
                    reasons.append("no bf16 below compute capability 8.0: use fp16")
                if gpu_need > gpu.memory_gib:
                    reasons.append(f"GPU needs {gpu_need:.1f} > {gpu.memory_gib:g} GiB")
                if host_need > host:
                    reasons.append(f"host needs {host_need:.1f} > {host:g} GiB RAM")
                rows.append(
                    {
                        "precision": precision,
                        "int8": int8,
                        "residency": residency,
                        "weights_total_gib": total,
                        "weights_on_gpu_gib": weights_gpu,
                        "gpu_need_gib": gpu_need,
                        "host_need_gib": host_need,
                        "fits": not reasons,
                        "why_not": "; ".join(reasons),
                    }
                )
    return rows


def format_table(
    stages: dict[str, StageWeights],
    rows: list[dict[str, Any]],
    gpu: Gpu,
    activations_gib: float,
    host_ram_gib: float,
) -> str:
    lines = [
        "Weights per stage (MiB; int8 column: fp16 + int8 matrices) from safetensors headers; "
        f"GPU {gpu.name} "
        f"{gpu.memory_gib:g} GiB ({gpu.instance}, host {host_ram_gib:g} GiB RAM)",
        "",
    ]
    lines.append(f"{'stage':<22}{'params':>16}{'fp32':>9}{'fp16':>9}{'int8':>9}")
    for name, s in stages.items():
        params = s.matrix_params + s.other_params
        mib = [
            s.bytes_at(p, q) / 2**20 for p, q in (("fp32", False), ("fp16", False), ("fp16", True))
        ]
        lines.append(f"{name:<22}{params:>16,}" + "".join(f"{m:>9.1f}" for m in mib))
    lines += [
        "",
        f"Assumed: activations {activations_gib:g} GiB, CUDA context "
        f"{CUDA_CONTEXT_GIB} GiB, host process {HOST_PROCESS_GIB} GiB.",
        "",
    ]
    lines.append(
        f"{'precision':<10}{'int8':<6}{'residency':<10}{'GPU GiB':>9}{'host GiB':>10}  fits"
    )
    for r in rows:
        fits = "yes" if r["fits"] else f"no: {r['why_not']}"
        lines.append(
            f"{r['precision']:<10}{'yes' if r['int8'] else 'no':<6}"
            f"{r['residency']:<10}{r['gpu_need_gib']:>9.2f}{r['host_need_gib']:>10.2f}"
            f"  {fits}"
        )
    return "\n".join(lines) + "\n"
