"""Every request body the CLI builds, checked against botocore's full service model.

`aws_requests` adds the model's enum, max, pattern and length rules to botocore's own
ParamValidator (which checks required members, types and minimums only). The dry-run
tests point AWS_ENDPOINT_URL at a closed port, so nothing is sent anywhere.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from aws_requests import dry_run_calls, request_problems
from botocore.validate import ParamValidator

from gen3d.aws.clients import _service_model
from gen3d.cli.main import main

ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
ROLE = "arn:aws:iam::123456789012:role/gen3d-t-sagemaker"
TRIGGER_ROLE = "arn:aws:iam::123456789012:role/gen3d-t-upload-trigger"
IMAGES = {flavor: f"{ECR}/gen3d-{flavor}:0a1b2c3d" for flavor in ("cpu", "gpu", "sam3d")}
# An instance each backend fits on (sam3d: 48 GB L40S; see serve/instances.py).
INSTANCE = {"silhouette": "ml.g4dn.xlarge", "proxy": "ml.g5.xlarge", "sam3d": "ml.g6e.xlarge"}


# ------------------------------------------------------------------ the validator itself

VALID_CONFIG = {
    "EndpointConfigName": "t-async-0a1b2c3d",
    "ProductionVariants": [
        {
            "VariantName": "AllTraffic",
            "ModelName": "t-model",
            "InstanceType": "ml.g5.xlarge",
            "InitialInstanceCount": 1,
            "InferenceAmiVersion": "al2023-ami-sagemaker-inference-gpu-4-1",
            "ModelDataDownloadTimeoutInSeconds": 600,
        }
    ],
}
SERVERLESS_CONFIG = {
    "EndpointConfigName": "s-serverless-0a1b2c3d",
    "ProductionVariants": [
        {
            "VariantName": "AllTraffic",
            "ModelName": "s-model",
            "ServerlessConfig": {"MemorySizeInMB": 4096, "MaxConcurrency": 5},
        }
    ],
}


def _variant(config: dict[str, Any], **changes: Any) -> dict[str, Any]:
    variant = {**config["ProductionVariants"][0], **changes}
    return {**config, "ProductionVariants": [variant]}


BOGUS = {
    "instance type": (VALID_CONFIG, {"InstanceType": "ml.bogus.xlarge"}, "InstanceType"),
    "AMI version": (VALID_CONFIG, {"InferenceAmiVersion": "al2-ami-bogus-9"}, "AmiVersion"),
    "99 999 s timeout": (
        VALID_CONFIG,
        {"ModelDataDownloadTimeoutInSeconds": 99_999},
        "ModelDataDownloadTimeoutInSeconds",
    ),
    "99 999 MB memory": (
        SERVERLESS_CONFIG,
        {"ServerlessConfig": {"MemorySizeInMB": 99_999, "MaxConcurrency": 5}},
        "MemorySizeInMB",
    ),
}


def test_the_valid_bodies_pass() -> None:
    for config in (VALID_CONFIG, SERVERLESS_CONFIG):
        assert request_problems("sagemaker", "CreateEndpointConfig", config) == []


@pytest.mark.parametrize("what", list(BOGUS))
def test_strict_validation_rejects_what_param_validator_lets_through(what: str) -> None:
    base, changes, member = BOGUS[what]
    body = _variant(base, **changes)
    shape = _service_model("sagemaker").operation_model("CreateEndpointConfig").input_shape
    # the control: botocore's own validator (what boto3 runs) accepts the bogus value
    assert not ParamValidator().validate(body, shape).has_errors()
    problems = request_problems("sagemaker", "CreateEndpointConfig", body)
    assert len(problems) == 1 and member in problems[0], problems


def test_strict_validation_runs_before_every_request_a_client_sends(unreachable_aws) -> None:
    # conftest installs it on every botocore session: the bogus body never leaves (the
    # port is closed, so anything sent would fail with a connection error instead)
    import boto3
    from aws_requests import StrictValidationError

    sagemaker = boto3.session.Session().client("sagemaker")
    base, changes, _ = BOGUS["99 999 MB memory"]
    with pytest.raises(StrictValidationError, match="MemorySizeInMB"):
        sagemaker.create_endpoint_config(**_variant(base, **changes))
    with pytest.raises(StrictValidationError, match=r"ml\.bogus\.xlarge"):
        sagemaker.create_endpoint_config(**_variant(VALID_CONFIG, InstanceType="ml.bogus.xlarge"))


# ---------------------------------------------------------------- every dry-run body

# Values only AWS gives (ARNs, the account) are placeholders in a dry run; each is filled
# with a value of the shape AWS would return before validating.
PLACEHOLDERS = [
    (r"<account-id>", "123456789012"),
    (r"<arn of SNS topic ([\w-]+)>", r"arn:aws:sns:eu-west-1:123456789012:\1"),
    (
        r"<arn of the step scaling policy>",
        "arn:aws:autoscaling:eu-west-1:123456789012:scalingPolicy:"
        "4a3f2c1b-0000-4000-8000-000000000000:resource/sagemaker/endpoint/t:policyName/step",
    ),
    (
        r"<arn of the scale-in policy>",
        "arn:aws:autoscaling:eu-west-1:123456789012:scalingPolicy:"
        "4a3f2c1b-0000-4000-8000-000000000001:resource/sagemaker/endpoint/t:policyName/in",
    ),
    (r"<arn of Lambda ([\w-]+)>", r"arn:aws:lambda:eu-west-1:123456789012:function:\1"),
    (r"<model of deployment ([\w-]+)>", r"\1-model"),
    (r"<(\d+) bytes>", "zip"),
    (r"<code of quota [^>]+>", "L-1A2B3C4D"),
]


def fill(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: fill(v) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v) for v in value]
    if isinstance(value, str):
        for pattern, replacement in PLACEHOLDERS:
            value = re.sub(pattern, replacement, value)
        assert "<" not in value or "<script>" in value, f"unfilled placeholder in {value!r}"
    return value


def checked_calls(output: str) -> list[tuple[str, str]]:
    """Validate every body the dry run printed; return (service, operation) of each."""
    seen = []
    for service, operation, body in dry_run_calls(output):
        problems = request_problems(service, operation, fill(body))
        assert problems == [], f"{service} {operation}: {problems}"
        seen.append((service, operation))
    return seen


def deploy_args(mode: str, backend: str, flavor: str, *extra: str) -> list[str]:
    instance = "ml.m5.large" if flavor == "cpu" else INSTANCE[backend]
    return [
        "deploy",
        "--name",
        "t",
        "--mode",
        mode,
        "--image",
        IMAGES[flavor],
        "--model-data",
        "s3://gen3d-models/t/model.tar.gz",
        "--role",
        ROLE,
        "--backend",
        backend,
        "--instance-type",
        instance,
        "--dry-run",
        *extra,
    ]


def refusal(mode: str, backend: str, flavor: str) -> str | None:
    """What deploy must refuse, and the words its message must contain."""
    if mode == "serverless" and (backend != "silhouette" or flavor != "cpu"):
        return "--mode async"
    if flavor == "cpu" and backend == "sam3d":
        return "needs a GPU"
    if mode == "realtime" and backend == "sam3d":
        return "60 s"
    if backend not in {"cpu": ("silhouette",), "gpu": ("silhouette", "proxy")}.get(
        flavor, ("sam3d",)
    ):
        return "does not run on the"  # each image serves its own backends
    return None


COMBINATIONS = [
    (mode, backend, flavor)
    for mode in ("serverless", "async", "realtime")
    for backend in ("silhouette", "proxy", "sam3d")
    for flavor in ("cpu", "gpu", "sam3d")
]


@pytest.mark.slow  # a second or more on 2 cores: whole CLI runs through botocore
@pytest.mark.parametrize(("mode", "backend", "flavor"), COMBINATIONS)
def test_every_deploy_body_passes_the_service_model(
    unreachable_aws, capsys, mode: str, backend: str, flavor: str
) -> None:
    extra = ["--notify-email", "ops@example.com", "--upload-trigger-role", TRIGGER_ROLE]
    code = main(deploy_args(mode, backend, flavor, *(extra if mode == "async" else [])))
    out, err = capsys.readouterr()
    expected_refusal = refusal(mode, backend, flavor)
    if expected_refusal:
        assert code == 1 and expected_refusal in err, err
        return
    assert code == 0, err
    seen = checked_calls(out)
    assert ("sagemaker", "CreateModel") in seen and ("sagemaker", "CreateEndpointConfig") in seen
    if mode == "async":
        for call in (
            ("application-autoscaling", "PutScalingPolicy"),
            ("cloudwatch", "PutMetricAlarm"),
            ("lambda", "CreateFunction"),
            ("s3", "PutBucketLifecycleConfiguration"),
        ):
            assert call in seen


@pytest.mark.slow  # a second or more on 2 cores: whole CLI runs through botocore
@pytest.mark.parametrize("backend", ["silhouette", "proxy", "sam3d"])
def test_every_scale_to_zero_body_passes_the_service_model(unreachable_aws, capsys, backend):
    extra = ["--scale-to-zero", "--seconds-per-image", "20"]
    flavor = "sam3d" if backend == "sam3d" else "gpu"  # the image that serves it
    assert main(deploy_args("realtime", backend, flavor, *extra)) == 0
    seen = checked_calls(capsys.readouterr().out)
    for call in (
        ("sagemaker", "CreateInferenceComponent"),
        ("sagemaker", "UpdateInferenceComponent"),
        ("application-autoscaling", "RegisterScalableTarget"),
        ("logs", "CreateLogGroup"),
    ):
        assert call in seen


def test_every_setup_body_passes_the_service_model(unreachable_aws, capsys):
    args = ["setup", "--name", "t", "--budget-usd", "40", "--budget-email", "ops@example.com"]
    assert main([*args, "--dry-run"]) == 0
    seen = checked_calls(capsys.readouterr().out)
    assert ("iam", "PutRolePolicy") in seen and ("budgets", "CreateBudget") in seen


def test_quota_request_dry_run_shows_the_service_quotas_call(unreachable_aws, capsys):
    args = ["setup", "--request-quota", "ml.g5.xlarge=1", "--dry-run"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert checked_calls(out) == [
        ("service-quotas", "ListServiceQuotas"),
        ("service-quotas", "RequestServiceQuotaIncrease"),
    ]
    request = next(b for _, op, b in dry_run_calls(out) if op == "RequestServiceQuotaIncrease")
    assert request["ServiceCode"] == "sagemaker" and request["DesiredValue"] == 1
    assert "ml.g5.xlarge for endpoint usage" in request["QuotaCode"]  # looked up by name


@pytest.mark.parametrize(
    ("instance", "flavor"),
    [("ml.m5.xlarge", None), ("ml.g5.xlarge", "sam3d"), ("ml.g4dn.xlarge", None)],
)
def test_every_batch_body_passes_the_service_model(unreachable_aws, capsys, instance, flavor):
    args = ["batch", "--name", "t", "--input", "s3://b/in/", "--output", "s3://b/out/"]
    args += ["--instance-type", instance, "--dry-run"]
    assert main(args + (["--flavor", flavor] if flavor else [])) == 0
    assert checked_calls(capsys.readouterr().out) == [
        ("service-quotas", "ListServiceQuotas"),  # the quota preflight, shown
        ("service-quotas", "ListAWSDefaultServiceQuotas"),
        ("sagemaker", "ListTransformJobs"),  # what running jobs already hold
        ("sagemaker", "CreateTransformJob"),
    ]


@pytest.mark.slow  # a second or more on 2 cores: whole CLI runs through botocore
def test_the_dry_run_check_catches_a_bogus_value(unreachable_aws, capsys):
    # the control for the tests above: a value deploy itself lets through (it checks only
    # the ml. prefix) is caught by the service model's enum
    args = deploy_args("async", "silhouette", "gpu")
    args[args.index("--instance-type") + 1] = "ml.g4dn.bogus"
    assert main(args) == 0
    with pytest.raises(AssertionError, match=r"ml\.g4dn\.bogus"):
        checked_calls(capsys.readouterr().out)
