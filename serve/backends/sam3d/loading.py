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
  fp16 at 42 k voxels. We choose by compute capability instead (choose_attention).
- Stages 1 and 2 (and the depth model) run under torch.autocast with the pipeline's
  `dtype` / `shape_model_dtype`, bfloat16 by default (inference_pipeline.py:69, 672,
  750). bf16 needs compute capability 8.0: below it xformers' memory-efficient kernels
  refuse bf16 ("bf16 is only supported on A100+ GPUs") and flash-attn refuses the GPU
  ("FlashAttention only supports Ampere GPUs or newer."), so we run fp16 there
  (choose_precision).
- The DINOv2 condition embedders come from torch.hub
  (model/backbone/dit/embedder/dino.py:35, `dinov2_vitl14_reg` in ss_generator.yaml):
  offline that needs the cached repo and the weights file under TORCH_HOME/hub.
- The depth model is MoGe, named in pipeline.yaml (`depth_model.model`:
  `moge.model.v1.MoGeModel.from_pretrained`, `pretrained_model_name_or_path`
  Ruicheng/moge-vitl in the released checkpoint): a local file when that path exists,
  else `hf_hub_download(repo_id, filename="model.pt")`, which offline reads
  HF_HOME/hub/models--<org>--<name>/refs/main and that snapshot's model.pt.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from gen3d.serve.errors import ArtifactError

if TYPE_CHECKING:
    import torch

log = logging.getLogger("gen3d.backend")

CONFIG_CANDIDATES = ("checkpoints/hf/pipeline.yaml", "pipeline.yaml")
SOURCE_DIR = "sam-3d-objects"
CACHE_DIRS = {"TORCH_HOME": "caches/torch", "HF_HOME": "caches/huggingface"}
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
UPSTREAM_MODULE_NAME = "gen3d_sam3d_notebook_inference"
HF_HUB_DIR = "caches/huggingface/hub"
# torch.hub's offline layout for `torch.hub.load("facebookresearch/dinov2",
# "dinov2_vitl14_reg")`: the repo cached as <owner>_<repo>_<branch>, the weights by
# their URL's file name.
DINOV2_FILES = (
    "caches/torch/hub/facebookresearch_dinov2_main/hubconf.py",
    "caches/torch/hub/checkpoints/dinov2_vitl14_reg4_pretrain.pth",
)
# inference_pipeline.py:16 (set_attention_backend): upstream forces flash-attn on these
# GPU names whatever we choose.
FLASH_ATTN_GPUS = ("A100", "H100", "H200")
# The attention kernels upstream can use, by import name, best first. flash-attn 2 and
# bf16 need compute capability 8.0 (Ampere); xformers' memory-efficient kernels run fp16
# from 7.0 (and bf16 from 8.0); sdpa is torch's own (dense masks for sparse attention).
FLASH_ATTN = "flash_attn"
MEMORY_EFFICIENT_BACKEND = "xformers"
FALLBACK_BACKEND = "sdpa"
BF16_CAPABILITY = (8, 0)
ATTENTION_ENV = ("ATTN_BACKEND", "SPARSE_ATTN_BACKEND")
DEFAULT_CUDA_HOME = "/usr/local/cuda"
# torch dtype name -> GEN3D_PRECISION name (torch is imported where it is used, so the
# layout above imports without it: `gen3d sam3d prepare` runs in the light venv)
PRECISION_NAMES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}
# the pipeline attributes torch.autocast reads (inference_pipeline.py:672, 750)
AUTOCAST_ATTRS = ("dtype", "shape_model_dtype")


@dataclass(frozen=True)
class Gpu:
    name: str
    capability: tuple[int, int]

    @property
    def capability_text(self) -> str:
        return f"{self.capability[0]}.{self.capability[1]}"


@dataclass(frozen=True)
class Attention:
    gpu: str
    capability: str
    dense: str
    sparse: str
    chosen_by: str  # "upstream", "gen3d" or "environment"
    reason: str

    def as_metadata(self) -> dict[str, str]:
        return {
            "gpu": self.gpu,
            "capability": self.capability,
            "dense": self.dense,
            "sparse": self.sparse,
            "chosen_by": self.chosen_by,
        }


def require_cuda() -> Gpu:
    """The CUDA device's name and compute capability, or a clear refusal (upstream
    cannot even be imported without CUDA)."""
    import torch  # here, so the layout constants import without torch (sam3d prepare)

    if not torch.cuda.is_available():
        raise ArtifactError(
            "the sam3d backend needs a CUDA GPU and none is visible "
            "(torch.cuda.is_available() is False): SAM 3D Objects reads the GPU name "
            "when imported and builds its models on CUDA. Run on a GPU instance "
            "(ml.g5 / ml.g6 / ml.p4d ...) with the sam3d image flavor.",
            public="the sam3d backend needs a CUDA GPU and none is visible",
        )
    device = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(device)
    return Gpu(torch.cuda.get_device_name(device), (int(major), int(minor)))


def installed_kernels() -> frozenset[str]:
    """The attention kernels importable here (found, not imported: importing is slow)."""
    return frozenset(
        name
        for name in (FLASH_ATTN, MEMORY_EFFICIENT_BACKEND)
        if importlib.util.find_spec(name) is not None
    )


def _refuse(gpu: Gpu, why: str) -> ArtifactError:
    return ArtifactError(
        f"sam3d cannot run on {gpu.name} (compute capability {gpu.capability_text}): {why}",
        public=f"the sam3d backend cannot run on this GPU: {why}",
    )


def choose_attention(gpu: Gpu, kernels: frozenset[str]) -> Attention:
    """Set ATTN_BACKEND / SPARSE_ATTN_BACKEND, before upstream is imported, from the
    GPU's compute capability and the kernels installed."""
    ampere = gpu.capability >= BF16_CAPABILITY
    if any(name in gpu.name for name in FLASH_ATTN_GPUS):
        # upstream overwrites both variables with flash_attn on these names
        if FLASH_ATTN not in kernels:
            raise _refuse(gpu, "upstream selects flash_attn by this GPU's name, not installed")
        return Attention(
            gpu.name,
            gpu.capability_text,
            FLASH_ATTN,
            FLASH_ATTN,
            "upstream",
            "upstream picks flash_attn by GPU name",
        )
    if os.environ.get("ATTN_BACKEND"):
        dense = os.environ["ATTN_BACKEND"]
        sparse = os.environ.get("SPARSE_ATTN_BACKEND", dense)
        if FLASH_ATTN in (dense, sparse) and not ampere:
            raise _refuse(gpu, "ATTN_BACKEND asks for flash_attn, which needs capability 8.0")
        return Attention(
            gpu.name, gpu.capability_text, dense, sparse, "environment", "ATTN_BACKEND is set"
        )
    if ampere and FLASH_ATTN in kernels:
        backend, reason = FLASH_ATTN, "capability >= 8.0 and flash_attn installed"
    elif MEMORY_EFFICIENT_BACKEND in kernels:
        backend = MEMORY_EFFICIENT_BACKEND
        reason = "xformers installed" + ("" if ampere else "; flash_attn needs capability 8.0")
    else:
        backend = FALLBACK_BACKEND
        reason = "neither flash_attn nor xformers installed (sdpa's sparse mask is dense)"
    for var in ATTENTION_ENV:
        os.environ[var] = backend
    return Attention(gpu.name, gpu.capability_text, backend, backend, "gen3d", reason)


def dtype_name(dtype: torch.dtype) -> str:
    """fp32 / fp16 / bf16 for a torch dtype."""
    return PRECISION_NAMES[str(dtype).removeprefix("torch.")]


def choose_precision(gpu: Gpu, configured: torch.dtype, requested: str) -> tuple[torch.dtype, str]:
    """The autocast dtype to run and why: GEN3D_PRECISION when set (bf16 refused below
    8.0), else pipeline.yaml's, with bf16 turned into fp16 below 8.0."""
    import torch

    ampere = gpu.capability >= BF16_CAPABILITY
    if requested != "auto":
        by_name = {name: getattr(torch, full) for full, name in PRECISION_NAMES.items()}
        if requested not in by_name:
            raise ArtifactError(f"GEN3D_PRECISION={requested!r}: use fp32, fp16 or bf16")
        if requested == "bf16" and not ampere:
            raise _refuse(gpu, "GEN3D_PRECISION=bf16 needs compute capability 8.0; use fp16")
        return by_name[requested], "GEN3D_PRECISION"
    if configured == torch.bfloat16 and not ampere:
        return torch.float16, "bf16 needs compute capability 8.0: fp16 instead of pipeline.yaml's"
    return configured, "pipeline.yaml"


def apply_precision(pipeline: Any, dtype: torch.dtype, requested: str) -> None:
    """Set the autocast dtypes upstream reads on every call (stages 1 and 2)."""
    import torch

    for attr in AUTOCAST_ATTRS:
        current = getattr(pipeline, attr, None)
        if current is None:
            continue
        if requested != "auto" or (current == torch.bfloat16 and dtype != torch.bfloat16):
            setattr(pipeline, attr, dtype)


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


def check_offline_caches(model_dir: Path, config_path: Path) -> None:
    """Refuse before upstream tries the network (torch.hub has no timeout there), in one
    line that names every missing file: DINOv2 for torch.hub, MoGe for the HF hub."""
    missing = [str(model_dir / rel) for rel in DINOV2_FILES if not (model_dir / rel).is_file()]
    moge = moge_source(config_path)
    moge_missing = moge is not None and _moge_file(model_dir, moge) is None
    if moge_missing:
        missing.append(str(model_dir / HF_HUB_DIR / _hub_repo_dir(moge) / "snapshots/*/model.pt"))
    if not missing:
        return
    fixes = []
    if any("caches/torch" in m for m in missing):
        fixes.append(
            "--torch-home DIR, DIR a TORCH_HOME where torch.hub.load('facebookresearch/dinov2', "
            "'dinov2_vitl14_reg') has run once"
        )
    if moge_missing:
        fixes.append(
            f"--hf-home DIR, DIR an HF_HOME where MoGeModel.from_pretrained({moge!r}) has run once"
        )
    raise ArtifactError(
        "the sam3d model dir lacks offline caches SAM 3D Objects loads: missing "
        + ", ".join(missing)
        + " (fetch them with `gen3d sam3d prepare --out DIR`, or package the model with "
        + "`gen3d package --backend sam3d "
        + " ".join(fixes)
        + "`)"
    )


def read_pipeline_config(config_path: Path) -> dict[str, Any]:
    import yaml  # the sam3d image has it (omegaconf's dependency); read only here

    try:
        config = yaml.safe_load(config_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ArtifactError(f"{config_path} is not valid YAML: {exc}") from None
    if not isinstance(config, dict):
        raise ArtifactError(f"{config_path} is not a mapping")
    return config


def configured_dtype(config_path: Path) -> torch.dtype:
    """pipeline.yaml's `dtype` (InferencePipeline's default: bfloat16)."""
    import torch

    name = read_pipeline_config(config_path).get("dtype", "bfloat16")
    dtypes = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
    if name not in dtypes:
        raise ArtifactError(f"{config_path}: dtype {name!r} is none of {', '.join(dtypes)}")
    return dtypes[name]


def moge_source(config_path: Path) -> str | None:
    """pipeline.yaml's MoGe checkpoint (a path or a hub repo id); None without MoGe."""
    config = read_pipeline_config(config_path)
    depth = config.get("depth_model")
    model = depth.get("model") if isinstance(depth, dict) else None
    if not isinstance(model, dict) or "moge" not in str(model.get("_target_", "")).lower():
        return None
    source = model.get("pretrained_model_name_or_path")
    return str(source) if source else None


def _hub_repo_dir(repo_id: str) -> str:
    return "models--" + repo_id.replace("/", "--")


def _moge_file(model_dir: Path, source: str) -> Path | None:
    """The file MoGeModel.from_pretrained would read offline, if it is there."""
    if Path(source).exists():  # from_pretrained's own test: a local path first
        return Path(source)
    repo = model_dir / HF_HUB_DIR / _hub_repo_dir(source)
    ref = repo / "refs" / "main"
    if not ref.is_file():
        return None
    weights = repo / "snapshots" / ref.read_text().strip() / "model.pt"
    return weights if weights.is_file() else None


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
