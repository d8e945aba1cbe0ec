"""The CUDA <-> SageMaker inference-AMI pairing, read from container/platform.json."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

PLATFORM_FILE = Path(__file__).resolve().parents[2] / "container" / "platform.json"

GPU_INSTANCE_FAMILIES = ("ml.g4dn", "ml.g5", "ml.g6", "ml.g6e", "ml.p3", "ml.p4d", "ml.p4de", "ml.p5")


@cache
def platform() -> dict[str, Any]:
    return json.loads(PLATFORM_FILE.read_text())


def is_gpu_instance(instance_type: str) -> bool:
    return instance_type.startswith(tuple(f + "." for f in GPU_INSTANCE_FAMILIES))


def inference_ami_version(instance_type: str) -> str | None:
    """The InferenceAmiVersion a variant on `instance_type` must set (None for CPU)."""
    return platform()["inference_ami_version"] if is_gpu_instance(instance_type) else None


def cuda_runs_on_ami(cuda_version: str, ami: str) -> bool:
    """True when a CUDA `cuda_version` runtime runs on `ami`'s driver."""
    limit = platform()["amis"][ami]["max_cuda"]
    as_tuple = lambda v: tuple(int(p) for p in v.split(".")[:2])  # noqa: E731
    return as_tuple(cuda_version) <= as_tuple(limit)
