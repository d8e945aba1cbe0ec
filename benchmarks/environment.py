"""Environment fingerprint recorded in every result: what the numbers were measured on.

GPU name, driver, CUDA and torch versions, CPU model, core count, load average, git
commit. Nothing here needs the network; a missing tool gives None, never a guess.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent  # inside the checkout when run from one


def cpu_model() -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or None
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else (platform.processor() or None)


def usable_cores() -> int:
    """Cores this process may run on (cgroup/affinity aware where the OS says so)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def memory_total_mb() -> float | None:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    match = re.search(r"^MemTotal:\s*(\d+) kB", text, re.MULTILINE)
    return round(int(match.group(1)) / 1024, 1) if match else None


def nvidia_driver() -> str | None:
    """Driver version from nvidia-smi (torch does not expose it); None without one."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=PACKAGE_DIR,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip() or None


def torch_info(device: str) -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {
            "torch": None,
            "cuda": None,
            "gpu_name": None,
            "gpu_capability": None,
            "gpu_memory_mb": None,
            "torch_threads": None,
        }
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,  # the CUDA the wheel was built with; None on CPU wheels
        "cudnn": None,
        "gpu_name": None,
        "gpu_capability": None,
        "gpu_memory_mb": None,
        "gpu_count": 0,
        "torch_threads": torch.get_num_threads(),
    }
    if device == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu_name=props.name,
            gpu_capability=f"{props.major}.{props.minor}",
            gpu_memory_mb=round(props.total_memory / 2**20),
            gpu_count=torch.cuda.device_count(),
            cudnn=torch.backends.cudnn.version(),
        )
    return info


def fingerprint(device: str = "cpu", instance_type: str | None = None) -> dict[str, Any]:
    """Everything needed to tell two result files' machines apart."""
    env: dict[str, Any] = {
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "device": device,
        "instance_type": instance_type or os.environ.get("GEN3D_INSTANCE_TYPE") or None,
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": usable_cores(),
        "memory_total_mb": memory_total_mb(),
        "load_average": load_average(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": _version("numpy"),
        "gunicorn": _version("gunicorn"),
        "git_commit": git_commit(),
        "driver": nvidia_driver() if device == "cuda" else None,
    }
    env.update(torch_info(device))
    return env


def device_slug(env: dict[str, Any]) -> str:
    """Results folder name: `cpu`, or the GPU's name (e.g. `cuda-nvidia-a10g`)."""
    if env.get("device") != "cuda" or not env.get("gpu_name"):
        return "cpu"
    return "cuda-" + re.sub(r"[^a-z0-9]+", "-", str(env["gpu_name"]).lower()).strip("-")


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return sys.modules[module].__version__ if module in sys.modules else None
