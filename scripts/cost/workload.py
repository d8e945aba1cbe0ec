"""What is being priced: the workload, the backend's footprint and the non-price
assumptions (start-up times, payload sizes, log volume, retention). None of these is a
price; every one is printed with the result so a reader can disagree with it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from gen3d.aws.scaling_params import ASYNC_SCALING, AsyncScaling
from gen3d.serve.backends import is_gpu_backend
from gen3d.serve.instances import SAM3D_HOST_GB, SAM3D_SUGGESTED

HOURS_PER_MONTH = 730.0  # AWS's billing month (8760 h / 12)
DAYS_PER_MONTH = HOURS_PER_MONTH / 24.0

# SageMaker's documented limits (docs/deploy.md).
REALTIME_MAX_CALL_S = 60.0
REALTIME_MAX_PAYLOAD_MB = 6.0
SERVERLESS_MAX_CALL_S = 60.0
# The default priced instance: the cheapest that `gen3d deploy` accepts for sam3d (L4 24 GB
# with stage offload, 32 GiB of host memory); the seed's ml.g4dn.xlarge is refused there.
DEFAULT_INSTANCE = SAM3D_SUGGESTED[0]
SERVERLESS_MAX_MEMORY_GB = 6.0
SERVERLESS_MAX_PAYLOAD_MB = 4.0
SERVERLESS_MAX_IMAGE_GB = 10.0
ASYNC_MAX_CALL_S = 3600.0

# The sam3d image, measured (docs/image.md, "Expected size of each flavor"): its
# hash-pinned lock, installed with `pip install --require-hashes --no-deps --target`, is
# 12.90 GB on disk from 5.20 GB of wheels (a wheel is about its files' gzip -6: torch
# 0.907 GB as a wheel, 0.915 GB as tar | gzip -6). The final stage adds the CUDA
# extensions (not built here: about 0.5 GB), upstream's source (0.12 GB) and the CUDA
# base with Python and nginx (about 0.35 GB): about 13.9 GB, 5.6 GB as gzip layers.
SAM3D_IMAGE_UNPACKED_GB = 13.9
SAM3D_IMAGE_GB = 5.6
# Pulling it: the venv is one layer (COPY --from=builder /opt/venv), downloaded whole and
# then gunzipped and written by one process. Unpacking was measured here: torch's 1.79 GB
# from tar.gz to disk in 64 s (median of 55/64/76 s, 2 shared cores) = 0.028 GB/s; from ECR
# the download rate is assumed (not measured: no AWS here).
UNPACK_GB_PER_S = 0.028
ASSUMED_DOWNLOAD_GB_PER_S = 0.1
# The rest of a start (instance provisioning, the model artifact, loading, warm-up) is
# still a guess: AWS only says "several minutes".
NON_PULL_STARTUP_S = 300.0


def image_pull_s(compressed_gb: float, unpacked_gb: float) -> float:
    """Seconds to pull an image: download its layers, then unpack them."""
    return compressed_gb / ASSUMED_DOWNLOAD_GB_PER_S + unpacked_gb / UNPACK_GB_PER_S


SAM3D_STARTUP_S = round(
    NON_PULL_STARTUP_S + image_pull_s(SAM3D_IMAGE_GB, SAM3D_IMAGE_UNPACKED_GB), -1
)


@dataclass(frozen=True)
class BackendProfile:
    """How much a backend needs. Sizes are estimates (SAM 3D: ~12 GB of checkpoints plus
    the DINOv2 and MoGe caches; upstream asks for a 32 GB GPU, 24 GB works staged)."""

    name: str
    needs_gpu: bool
    memory_gb: float  # host memory the serving process needs
    image_gb: float  # compressed container image in ECR
    artifact_gb: float  # model.tar.gz in S3


BACKEND_PROFILES: dict[str, BackendProfile] = {
    "silhouette": BackendProfile("silhouette", is_gpu_backend("silhouette"), 2.0, 1.5, 0.0),
    "proxy": BackendProfile("proxy", is_gpu_backend("proxy"), 8.0, 8.0, 1.0),
    # sam3d's host memory is the one gen3d deploy checks (serve/instances.py); its image
    # size is measured (SAM3D_IMAGE_GB)
    "sam3d": BackendProfile("sam3d", is_gpu_backend("sam3d"), SAM3D_HOST_GB, SAM3D_IMAGE_GB, 13.0),
}


@dataclass(frozen=True)
class Assumptions:
    """Non-price inputs. Defaults are stated estimates, not measurements."""

    # Instance launch to InService: provisioning, pulling the sam3d image (its measured
    # size, SAM3D_STARTUP_S above), loading weights and warm-up; billed from launch. An
    # estimate beyond the pull: AWS documents only that provisioning "takes several
    # minutes" (endpoint-auto-scaling-zero-instances.html). `gen3d cost --startup-s`
    # replaces it.
    startup_s: float = SAM3D_STARTUP_S
    # Start/stop on demand: a scheduler checks every `stop_check_s` and deletes the
    # endpoint once it has been idle for `stop_idle_s`.
    stop_idle_s: float = 900.0
    stop_check_s: float = 300.0
    # Batch transform: job start-up (instance + image + weights) and parallel transforms.
    batch_job_startup_s: float = SAM3D_STARTUP_S
    batch_concurrency: int = 1
    # Always-on: add instances once one would be busier than this on average.
    max_utilisation: float = 0.7
    # Payloads: an RGBA PNG in, a GLB out.
    request_mb: float = 1.0
    response_mb: float = 4.0
    # CloudWatch: log bytes per request and per instance-hour (start-up, /ping lines);
    # retention as `gen3d deploy` sets it (scripts/aws/deploy.py, 30 days).
    log_kb_per_request: float = 4.0
    log_mb_per_instance_hour: float = 0.2
    log_retention_days: float = 30.0
    # Lambda: one 128 MB, 1 s call per upload under input/ (the invoker Lambda of
    # scripts/aws/storage.py), per scheduler tick, per batch job started.
    lambda_memory_gb: float = 0.128
    lambda_seconds: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Workload:
    images_per_month: float
    seconds_per_image: float
    instance_type: str = DEFAULT_INSTANCE
    backend: str = "sam3d"
    arrivals: str = "poisson"  # or "daily-batch"
    assumptions: Assumptions = field(default_factory=Assumptions)
    scaling: AsyncScaling = ASYNC_SCALING

    def __post_init__(self) -> None:
        if self.images_per_month < 0:
            raise ValueError("images per month must be >= 0")
        if self.seconds_per_image <= 0:
            raise ValueError("seconds per image must be > 0")
        if self.backend not in BACKEND_PROFILES:
            raise ValueError(
                f"unknown backend {self.backend!r}; choose from {', '.join(BACKEND_PROFILES)}"
            )
        if self.arrivals not in ("poisson", "daily-batch"):
            raise ValueError("arrivals must be poisson or daily-batch")

    @property
    def profile(self) -> BackendProfile:
        return BACKEND_PROFILES[self.backend]

    def with_volume(self, images_per_month: float) -> Workload:
        return Workload(
            images_per_month=images_per_month,
            seconds_per_image=self.seconds_per_image,
            instance_type=self.instance_type,
            backend=self.backend,
            arrivals=self.arrivals,
            assumptions=self.assumptions,
            scaling=self.scaling,
        )
