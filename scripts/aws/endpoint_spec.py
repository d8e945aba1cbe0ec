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
from gen3d.serve import instances
from gen3d.serve.backends import BUILTIN_NAMES, is_gpu_backend
from gen3d.serve.model.capacity import plan as capacity_plan
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
# InvokeEndpoint: the container must answer within 60 s (API reference, InvokeEndpoint;
# the server's own deadline, GEN3D_REQUEST_TIMEOUT_S, defaults to 55 s inside it).
REALTIME_INVOCATION_LIMIT_S = 60.0
# Seconds per image where no measurement is given (--seconds-per-image): SAM 3D at the
# seed plan's 60 s of GPU per image (docs/cost.md).
EXPECTED_SECONDS_PER_IMAGE = {"sam3d": 60.0}

_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,39}$")


def flavor_of_image(image: str) -> str | None:
    """The flavor named in an image's repository or tag (`make build` tags
    gen3d-gpu:..., gen3d-cpu:...); None when it names none."""
    last = image.rsplit("/", 1)[-1].split("@")[0]
    tokens = set(re.split(r"[-_.:]", last.lower()))
    for name in sorted(FLAVORS, key=lambda n: n != "sam3d"):  # sam3d before gpu
        if name in tokens:
            return name
    return "gpu" if "cuda" in tokens else None


def default_backend(image: str, flavor: str | None = None) -> str:
    """The backend a deploy serves when --backend is not given: the image flavor's own
    (sam3d for a sam3d image; platform.json's `backends`)."""
    return platform.default_backend(flavor or flavor_of_image(image))


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
    seconds_per_image: float | None = None  # measured; None: EXPECTED_SECONDS_PER_IMAGE

    @property
    def uncompressed_model(self) -> bool:
        """--model-data names an S3 prefix (gen3d package --uncompressed), not a tarball."""
        return bool(self.model_data and self.model_data.endswith("/"))

    @property
    def image_flavor(self) -> str | None:
        """--flavor, else the flavor named in the image's repository or tag."""
        return self.flavor or flavor_of_image(self.image)

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
        if (
            self.mode != "serverless"
            and instances.backend_fit(self.backend, self.instance_type).offload
        ):
            env["GEN3D_STAGE_OFFLOAD"] = "1"  # a 24 GB GPU holds one stage at a time
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
                f"backend sam3d needs a GPU; {spec.instance_type} has none. "
                f"{instances.SAM3D_SUGGESTION}"
            )
        if spec.gpu_image and not is_gpu_instance(spec.instance_type):
            raise AwsCommandError(
                f"image {spec.image} is the GPU flavor but {spec.instance_type} has no GPU"
            )
        _validate_gpu(spec)
        if not 1 <= spec.max_instances <= 100:
            raise AwsCommandError("--max-instances must be between 1 and 100")
    if spec.mode == "realtime":
        _validate_realtime_time(spec)
    problem = platform.backend_problem(spec.image_flavor, spec.backend)
    if problem:  # e.g. silhouette on the sam3d image: it would load, but not the model
        raise AwsCommandError(problem)


def _validate_gpu(spec: DeploySpec) -> None:
    fit = instances.backend_fit(spec.backend, spec.instance_type)
    if fit.refusal:
        raise AwsCommandError(fit.refusal)
    if fit.offload and spec.settings().stage_offload is False:
        raise AwsCommandError(
            f"backend sam3d fits {spec.instance_type}'s 24 GB GPU only with stage offload, "
            f"but --env sets GEN3D_STAGE_OFFLOAD off. {instances.SAM3D_SUGGESTION}"
        )
    problem = platform.gpu_problem(spec.instance_type, spec.image_flavor)
    if problem:
        raise AwsCommandError(problem)


def _validate_realtime_time(spec: DeploySpec) -> None:
    suggestion = "use --mode async: requests may run 900 s there, and it scales to zero"
    deadline = spec.settings().request_timeout_s
    if deadline > REALTIME_INVOCATION_LIMIT_S:
        raise AwsCommandError(
            f"GEN3D_REQUEST_TIMEOUT_S={deadline:g}: real-time invocations end after "
            f"{REALTIME_INVOCATION_LIMIT_S:g} s whatever the server allows; {suggestion}"
        )
    seconds = spec.seconds_per_image or EXPECTED_SECONDS_PER_IMAGE.get(spec.backend)
    if seconds is not None and seconds >= deadline:
        source = "measured" if spec.seconds_per_image else "expected"
        raise AwsCommandError(
            f"backend {spec.backend} takes {seconds:g} s per image ({source}; give a "
            f"measurement with --seconds-per-image); a real-time request must finish within "
            f"the server's {deadline:g} s deadline (AWS ends it at "
            f"{REALTIME_INVOCATION_LIMIT_S:g} s). {suggestion}"
        )


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


def async_concurrency(spec: DeploySpec) -> int:
    """Requests in flight per async instance: what its workers run at once (the batcher
    groups up to GEN3D_MAX_BATCH_SIZE; sam3d and silhouette run one sample). More would
    wait inside a busy container while the backlog metric, which scales out, stays low."""
    settings = spec.settings()
    # MODEL_SERVER_WORKERS=0 is the container's own plan (gen3d.serve.model.capacity): one worker
    # per GPU for a GPU backend, and the instance type says how many GPUs it has. A CPU
    # backend's one-per-core is counted as one worker (cores are not in the table): the
    # least any instance runs, so nothing waits in a container.
    gpus = [str(i) for i in range(instances.gpu_count(spec.instance_type))]
    plan = capacity_plan(settings, cores=1, gpus=gpus)
    return plan.workers * plan.batch_size


def _short_hash(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def model_request(spec: DeploySpec) -> dict[str, Any]:
    container: dict[str, Any] = {"Image": spec.image, "Environment": spec.model_environment()}
    if spec.uncompressed_model:
        # Files under a prefix, copied as they are: no download-and-extract of a tarball
        # at each cold start (CreateModel: ModelDataSource.S3DataSource, CompressionType
        # None, S3DataType S3Prefix; the URI must end in "/").
        container["ModelDataSource"] = {
            "S3DataSource": {
                "S3Uri": spec.model_data,
                "S3DataType": "S3Prefix",
                "CompressionType": "None",
            }
        }
    elif spec.model_data:
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
            "ClientConfig": {"MaxConcurrentInvocationsPerInstance": async_concurrency(spec)},
        }
    body["ProductionVariants"] = [variant]
    name = f"{spec.name}-{spec.mode}-{_short_hash(body)}"
    return {"EndpointConfigName": name, **body, "Tags": tag_list(spec.name)}
