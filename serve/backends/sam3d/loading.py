"""Finding, preparing and importing SAM 3D Objects' notebook/inference.py.

Facts below are from facebookresearch/sam-3d-objects at the pinned commit cf066761
(tests/fixtures/sam3d_upstream_contract.json records them; tools/sam3d_contract.py
regenerates it):

- notebook/inference.py:5 does `os.environ["CUDA_HOME"] = os.environ["CONDA_PREFIX"]`
  at import (KeyError without CONDA_PREFIX) and sets LIDRA_SKIP_INIT, without which
  sam3d_objects/__init__.py imports `sam3d_objects.init`, a module that is not there.
- sam3d_objects/pipeline/inference_pipeline.py:11-21 reads the GPU name at import;
  without CUDA `gpu_name` is unbound and the import fails; the pipeline constructor
  calls torch.cuda.current_device(). So no CUDA means a refusal here, before import.
- The same function picks flash-attn only when the GPU name contains A100, H100 or
  H200; elsewhere both attention paths fall back to SDPA, whose sparse variant builds a
  dense (tokens x tokens) mask (sparse/attention/masked_sdpa.py): about 3.3 GiB in
  fp16 at 42 k voxels. We choose xformers (memory-efficient, installed) there.
- The DINOv2 condition embedders come from torch.hub
  (model/backbone/dit/embedder/dino.py:35, `dinov2_vitl14_reg` in ss_generator.yaml):
  offline that needs the cached repo and the weights file under TORCH_HOME/hub.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from gen3d.serve.errors import ArtifactError

log = logging.getLogger("gen3d.backend")

CONFIG_CANDIDATES = ("checkpoints/hf/pipeline.yaml", "pipeline.yaml")
SOURCE_DIR = "sam-3d-objects"
CACHE_DIRS = {"TORCH_HOME": "caches/torch", "HF_HOME": "caches/huggingface"}
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
UPSTREAM_MODULE_NAME = "gen3d_sam3d_notebook_inference"
# torch.hub's offline layout for `torch.hub.load("facebookresearch/dinov2",
# "dinov2_vitl14_reg")`: the repo cached as <owner>_<repo>_<branch>, the weights by
# their URL's file name.
DINOV2_FILES = (
    "caches/torch/hub/facebookresearch_dinov2_main/hubconf.py",
    "caches/torch/hub/checkpoints/dinov2_vitl14_reg4_pretrain.pth",
)
# inference_pipeline.py:16 (set_attention_backend): flash-attn only on these GPUs.
FLASH_ATTN_GPUS = ("A100", "H100", "H200")
MEMORY_EFFICIENT_BACKEND = "xformers"
ATTENTION_ENV = ("ATTN_BACKEND", "SPARSE_ATTN_BACKEND")
DEFAULT_CUDA_HOME = "/usr/local/cuda"


@dataclass(frozen=True)
class Attention:
    gpu: str
    dense: str
    sparse: str
    chosen_by: str  # "upstream", "gen3d" or "environment"

    def as_metadata(self) -> dict[str, str]:
        return {
            "gpu": self.gpu,
            "dense": self.dense,
            "sparse": self.sparse,
            "chosen_by": self.chosen_by,
        }


def require_cuda() -> str:
    """The CUDA device's name, or a clear refusal (upstream cannot even be imported)."""
    import torch  # here, so the layout constants above import without torch (sam3d prepare)

    if not torch.cuda.is_available():
        raise ArtifactError(
            "the sam3d backend needs a CUDA GPU and none is visible "
            "(torch.cuda.is_available() is False): SAM 3D Objects reads the GPU name "
            "when imported and builds its models on CUDA. Run on a GPU instance "
            "(ml.g5 / ml.g6 / ml.p4d ...) with the sam3d image flavor.",
            public="the sam3d backend needs a CUDA GPU and none is visible",
        )
    return torch.cuda.get_device_name(torch.cuda.current_device())


def choose_attention(gpu_name: str) -> Attention:
    """Set ATTN_BACKEND / SPARSE_ATTN_BACKEND before upstream is imported."""
    if any(name in gpu_name for name in FLASH_ATTN_GPUS):
        # upstream overwrites both variables with flash_attn on these GPUs
        return Attention(gpu_name, "flash_attn", "flash_attn", "upstream")
    if os.environ.get("ATTN_BACKEND"):
        dense = os.environ["ATTN_BACKEND"]
        sparse = os.environ.get("SPARSE_ATTN_BACKEND", dense)
        return Attention(gpu_name, dense, sparse, "environment")
    for var in ATTENTION_ENV:
        os.environ[var] = MEMORY_EFFICIENT_BACKEND
    return Attention(gpu_name, MEMORY_EFFICIENT_BACKEND, MEMORY_EFFICIENT_BACKEND, "gen3d")


def prepare_import_environment() -> dict[str, str]:
    """What notebook/inference.py and sam3d_objects/__init__.py need at import."""
    env = {
        "CONDA_PREFIX": os.environ.get("CONDA_PREFIX")
        or os.environ.get("CUDA_HOME")
        or DEFAULT_CUDA_HOME,
        "LIDRA_SKIP_INIT": os.environ.get("LIDRA_SKIP_INIT") or "true",
    }
    os.environ.update(env)
    return env


def find_pipeline_config(model_dir: Path) -> Path:
    for rel in CONFIG_CANDIDATES:
        if (model_dir / rel).is_file():
            return model_dir / rel
    raise ArtifactError(
        f"no SAM 3D Objects config in {model_dir}: expected "
        + " or ".join(str(model_dir / rel) for rel in CONFIG_CANDIDATES)
    )


def check_offline_caches(model_dir: Path) -> None:
    """Refuse before upstream tries the network (torch.hub has no timeout there)."""
    missing = [rel for rel in DINOV2_FILES if not (model_dir / rel).is_file()]
    if missing:
        raise ArtifactError(
            "the sam3d model dir lacks the offline DINOv2 cache that SAM 3D Objects loads "
            "through torch.hub: missing "
            + ", ".join(str(model_dir / rel) for rel in missing)
            + " (fetch them with `gen3d sam3d prepare --out DIR`, or package the model with "
            "`gen3d package --backend sam3d --torch-home DIR`, "
            "DIR being a TORCH_HOME where torch.hub.load('facebookresearch/dinov2', "
            "'dinov2_vitl14_reg') has run once)"
        )


def force_offline_hubs(model_dir: Path) -> dict[str, str]:
    """Set the hub variables for this process (before upstream is imported)."""
    env = dict(OFFLINE_ENV)
    for var, rel in CACHE_DIRS.items():
        env[var] = str(model_dir / rel)
        if not (model_dir / rel).is_dir():
            log.warning("sam3d: %s (%s) is missing; offline loads from it will fail", rel, var)
    os.environ.update(env)
    return env


def find_upstream_source(model_dir: Path) -> Path:
    """notebook/inference.py of the SAM 3D Objects checkout to use."""
    candidates = [model_dir / SOURCE_DIR / "notebook" / "inference.py"]
    spec = importlib.util.find_spec("sam3d_objects")  # locates, does not import
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).resolve().parents[1] / "notebook" / "inference.py")
    for path in candidates:
        if path.is_file():
            return path
    raise ArtifactError(
        "SAM 3D Objects is not installed: no "
        + " or ".join(str(p) for p in candidates)
        + " (the sam3d backend runs only in the GPU image flavor that carries it)"
    )


def import_upstream(model_dir: Path) -> ModuleType:
    """Import notebook/inference.py (it is a script directory, not a package)."""
    if UPSTREAM_MODULE_NAME in sys.modules:
        return sys.modules[UPSTREAM_MODULE_NAME]
    path = find_upstream_source(model_dir)
    repo = str(path.parents[1])
    if repo not in sys.path:  # inference.py does `import sam3d_objects`
        sys.path.insert(0, repo)
    spec = importlib.util.spec_from_file_location(UPSTREAM_MODULE_NAME, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[UPSTREAM_MODULE_NAME] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        del sys.modules[UPSTREAM_MODULE_NAME]
        raise
    if not hasattr(module, "Inference"):
        raise ArtifactError(f"{path} has no Inference class")
    return module
