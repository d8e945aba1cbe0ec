"""What `gen3d deploy` asks SageMaker for: the spec, its refusals, and the request bodies.

Pure functions (no AWS calls), so --dry-run prints exactly the bodies a real run sends and
the tests check them with botocore's own validator.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from gen3d.aws import platform
from gen3d.aws.clients import tag_list
from gen3d.aws.errors import AwsCommandError
from gen3d.aws.platform import is_gpu_instance
from gen3d.serve.backends import BUILTIN_NAMES, is_gpu_backend
from gen3d.serve.settings import Settings, SettingsError

MODES = ("serverless", "async", "realtime")
FLAVORS = tuple(platform.flavor_names())
VARIANT = "AllTraffic"

# SageMaker Serverless Inference limits (docs: serverless-endpoints.html, read 2026-11).
SERVERLESS_MEMORY_MB = range(1024, 6144 + 1, 1024)
SERVERLESS_MAX_CONCURRENCY = 200
SERVERLESS_MAX_IMAGE_BYTES = 10 * 1000**3
SERVERLESS_PAYLOAD_MB = 4
ASYNC_INVOCATION_TIMEOUT_S = 900  # InvokeEndpointAsync's default InvocationTimeoutSeconds
ASYNC_MAX_BODY_MB = 100

_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,39}$")


@dataclass(frozen=True)
class DeploySpec:
    name: str
    mode: str
    image: str
    model_data: str | None
    role_arn: str
    backend: str = "silhouette"
    instance_type: str = "ml.g4dn.xlarge"
    initial_instances: int = 1
    max_instances: int = 2
    memory_mb: int = 4096
    max_concurrency: int = 5
    flavor: str | None = None  # None: inferred from the image tag
    notify_email: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def image_flavor(self) -> str | None:
        """--flavor, else the flavor named in the image's repository or tag
        (`make build` tags gen3d-gpu:..., gen3d-cpu:...); None when neither says."""
        if self.flavor:
            return self.flavor
        last = self.image.rsplit("/", 1)[-1].split("@")[0]
        tokens = set(re.split(r"[-_.:]", last.lower()))
        for name in sorted(FLAVORS, key=lambda n: n != "sam3d"):  # sam3d before gpu
            if name in tokens:
                return name
        return "gpu" if "cuda" in tokens else None

    @property
    def gpu_image(self) -> bool:
        flavor = self.image_flavor
        return flavor is not None and platform.flavor(flavor)["cuda_version"] is not None

    def model_environment(self) -> dict[str, str]:
        env = {"GEN3D_BACKEND": self.backend}
        env["GEN3D_DEPLOYMENT"] = self.name  # the container's metric dimension (issue 17)
        if self.mode == "async":
            # Async calls may run for minutes and carry large inputs from S3.
            env["GEN3D_REQUEST_TIMEOUT_S"] = str(ASYNC_INVOCATION_TIMEOUT_S)
            env["MODEL_SERVER_TIMEOUT"] = str(ASYNC_INVOCATION_TIMEOUT_S + 60)
            env["GEN3D_MAX_BODY_MB"] = str(ASYNC_MAX_BODY_MB)
        elif self.mode == "serverless":
            env["GEN3D_MAX_BODY_MB"] = str(SERVERLESS_PAYLOAD_MB)
            env["GEN3D_DEVICE"] = "cpu"
        return {**env, **self.extra_env}

    def settings(self) -> Settings:
        """The server's settings under this model environment (what the container reads)."""
        try:
            return Settings.from_env(self.model_environment())
        except SettingsError as exc:
            raise AwsCommandError(f"--env: {exc}") from None


def validate(spec: DeploySpec) -> None:
    """Refuse what cannot work, with the reason and what to use instead."""
    if spec.flavor is not None and spec.flavor not in FLAVORS:
        raise AwsCommandError(f"--flavor must be one of {', '.join(FLAVORS)}")
    if not _NAME.match(spec.name):
        raise AwsCommandError(
            f"--name {spec.name!r}: use 1-40 letters, digits and hyphens, "
            "starting and ending with a letter or digit"
        )
    if spec.mode not in MODES:
        raise AwsCommandError(f"--mode must be one of {', '.join(MODES)}")
    if spec.backend not in BUILTIN_NAMES:
        raise AwsCommandError(f"--backend must be one of {', '.join(BUILTIN_NAMES)}")
    if not spec.role_arn.startswith("arn:"):
        raise AwsCommandError(
            f"--role {spec.role_arn!r} is not an IAM role ARN (run `gen3d setup` to create one)"
        )
    if spec.model_data is not None and not spec.model_data.startswith("s3://"):
        raise AwsCommandError(f"--model-data must be an s3:// URI, got {spec.model_data!r}")
    spec.settings()  # bad --env values fail here, not at container start
    if spec.mode == "serverless":
        _validate_serverless(spec)
    else:
        if not spec.instance_type.startswith("ml."):
            raise AwsCommandError(f"--instance-type {spec.instance_type!r}: expected ml.*")
        if spec.backend == "sam3d" and not is_gpu_instance(spec.instance_type):
            raise AwsCommandError(
                f"backend sam3d needs a GPU; {spec.instance_type} has none "
                "(use ml.g5.xlarge or ml.g4dn.xlarge)"
            )
        if spec.gpu_image and not is_gpu_instance(spec.instance_type):
            raise AwsCommandError(
                f"image {spec.image} is the GPU flavor but {spec.instance_type} has no GPU"
            )
        if not 1 <= spec.max_instances <= 100:
            raise AwsCommandError("--max-instances must be between 1 and 100")


def _validate_serverless(spec: DeploySpec) -> None:
    suggestion = "use --mode async: it runs on GPU instances and still scales to zero when idle"
    if is_gpu_backend(spec.backend):
        raise AwsCommandError(
            f"serverless endpoints have no GPU, 6 GB memory at most and 60 s per call; "
            f"backend {spec.backend} needs a GPU. {suggestion}"
        )
    if spec.gpu_image:
        raise AwsCommandError(
            f"serverless endpoints have no GPU; {spec.image} is the {spec.image_flavor} "
            "(CUDA) image flavor. "
            f"Deploy the cpu flavor, or {suggestion}"
        )
    if spec.memory_mb not in SERVERLESS_MEMORY_MB:
        raise AwsCommandError(
            f"--memory-mb {spec.memory_mb}: serverless memory must be 1024-6144 MB in 1024 MB "
            f"steps; for more memory {suggestion}"
        )
    if not 1 <= spec.max_concurrency <= SERVERLESS_MAX_CONCURRENCY:
        raise AwsCommandError(f"--max-concurrency must be 1-{SERVERLESS_MAX_CONCURRENCY}")


def check_serverless_image_size(spec: DeploySpec, image_bytes: int | None) -> None:
    if spec.mode == "serverless" and image_bytes and image_bytes > SERVERLESS_MAX_IMAGE_BYTES:
        raise AwsCommandError(
            f"image {spec.image} is {image_bytes / 1000**3:.1f} GB; serverless endpoints take "
            "images up to 10 GB. Use --mode async (GPU instances, scales to zero)"
        )


def startup_timeouts(model_bytes: int | None) -> tuple[int, int]:
    """(ModelDataDownloadTimeoutInSeconds, ContainerStartupHealthCheckTimeoutInSeconds) for
    an artifact of `model_bytes`: download at a conservative 50 MB/s, load at 100 MB/s
    plus warm-up, each with a floor, capped at SageMaker's 3600 s."""
    size = model_bytes or 0
    download = 120 + size / 50e6
    startup = 300 + size / 100e6
    return min(3600, int(download)), min(3600, int(startup))


def ami_version(spec: DeploySpec) -> str | None:
    """InferenceAmiVersion for the variant: the image flavor's AMI on GPU instances."""
    flavor = spec.image_flavor
    return platform.inference_ami_version(spec.instance_type, flavor if flavor else None)


def _short_hash(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def model_request(spec: DeploySpec) -> dict[str, Any]:
    container: dict[str, Any] = {"Image": spec.image, "Environment": spec.model_environment()}
    if spec.model_data:
        container["ModelDataUrl"] = spec.model_data
    body = {"PrimaryContainer": container, "ExecutionRoleArn": spec.role_arn}
    # Models are immutable: the name carries a hash of the body, so a changed image or
    # environment makes a new model and an unchanged one finds the old.
    return {"ModelName": f"{spec.name}-{_short_hash(body)}", **body, "Tags": tag_list(spec.name)}


def endpoint_config_request(
    spec: DeploySpec,
    model_name: str,
    *,
    model_bytes: int | None,
    output_path: str | None = None,
    failure_path: str | None = None,
    success_topic: str | None = None,
    error_topic: str | None = None,
) -> dict[str, Any]:
    variant: dict[str, Any] = {"VariantName": VARIANT, "ModelName": model_name}
    body: dict[str, Any] = {}
    if spec.mode == "serverless":
        variant["ServerlessConfig"] = {
            "MemorySizeInMB": spec.memory_mb,
            "MaxConcurrency": spec.max_concurrency,
        }
    else:
        variant["InstanceType"] = spec.instance_type
        variant["InitialInstanceCount"] = spec.initial_instances
        download_s, startup_s = startup_timeouts(model_bytes)
        variant["ModelDataDownloadTimeoutInSeconds"] = download_s
        variant["ContainerStartupHealthCheckTimeoutInSeconds"] = startup_s
        ami = ami_version(spec)
        if ami:
            variant["InferenceAmiVersion"] = ami
    if spec.mode == "async":
        output: dict[str, Any] = {"S3OutputPath": output_path, "S3FailurePath": failure_path}
        if success_topic and error_topic:
            output["NotificationConfig"] = {
                "SuccessTopic": success_topic,
                "ErrorTopic": error_topic,
            }
        body["AsyncInferenceConfig"] = {
            "OutputConfig": output,
            # One batch's worth in flight per instance: the server's dynamic batcher
            # groups them; more would only queue inside the container.
            "ClientConfig": {"MaxConcurrentInvocationsPerInstance": spec.settings().max_batch_size},
        }
    body["ProductionVariants"] = [variant]
    name = f"{spec.name}-{spec.mode}-{_short_hash(body)}"
    return {"EndpointConfigName": name, **body, "Tags": tag_list(spec.name)}
