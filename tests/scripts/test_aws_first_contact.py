"""What a first real deployment would hit (issue 13), against a real moto server."""

from __future__ import annotations

import fnmatch
import json
import re

import boto3
import pytest
from aws_requests import MODEL_BUCKET, dry_run_calls

from gen3d.aws import autoscaling, endpoint_spec, inference_components, storage
from gen3d.aws.clients import AwsClients
from gen3d.aws.endpoint_spec import DeploySpec
from gen3d.aws.errors import AwsCommandError
from gen3d.aws.plan import Plan
from gen3d.aws.upload_trigger import ensure_function
from gen3d.aws.waiters import wait_for_endpoint
from gen3d.cli.main import main
from gen3d.serve import instances

ACCOUNT = "123456789012"
ECR = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/gen3d-t-sagemaker"
GPU_IMAGE = f"{ECR}/gen3d-gpu:0a1b2c3d"
MODEL_DATA = f"s3://{MODEL_BUCKET}/silhouette/model.tar.gz"


def deploy(name: str, mode: str, *extra: str, image: str = GPU_IMAGE) -> int:
    return main(
        [
            "deploy",
            "--name",
            name,
            "--mode",
            mode,
            "--image",
            image,
            "--role",
            ROLE,
            "--poll",
            "0.01",
            "--timeout",
            "30",
            *extra,
        ]
    )


def inline_policy(role: str) -> dict:
    return boto3.client("iam").get_role_policy(RoleName=role, PolicyName="gen3d-least-privilege")[
        "PolicyDocument"
    ]


def allows(policy: dict, action: str, resource: str) -> bool:
    """IAM's own matching, for Allow statements: action and resource wildcards."""
    for statement in policy["Statement"]:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        resources = statement["Resource"]
        resources = resources if isinstance(resources, list) else [resources]
        if statement["Effect"] == "Allow" and any(fnmatch.fnmatchcase(action, a) for a in actions):
            if any(fnmatch.fnmatchcase(resource, r) for r in resources):
                return True
    return False


# ------------------------------------------------------------------ 1. image pull


@pytest.mark.slow  # a second or more on 2 cores: whole CLI runs through botocore
def test_readme_order_setup_push_deploy_lets_the_role_pull_the_image(aws, capsys):
    # setup (for real, on the emulator), then `make push` (FLAVOR=gpu: gen3d push
    # gen3d-gpu:SHA) as a dry run, then the README's deploy example as a dry run
    assert main(["setup", "--name", "t"]) == 0
    capsys.readouterr()
    assert main(["push", "gen3d-gpu:0a1b2c3d", "--dry-run"]) == 0
    pushed = re.search(r"docker push (\S+)", capsys.readouterr().out).group(1)
    image = pushed.replace("<account>", ACCOUNT)
    args = ["--model-data", "s3://b/model.tar.gz", "--backend", "proxy"]
    args += ["--instance-type", "ml.g5.xlarge", "--dry-run"]
    assert deploy("t", "async", *args, image=image) == 0
    models = [b for s, op, b in dry_run_calls(capsys.readouterr().out) if op == "CreateModel"]
    (model,) = models
    deployed = model["PrimaryContainer"]["Image"]
    assert model["ExecutionRoleArn"] == ROLE
    repository = deployed.split("/", 1)[1].split(":")[0]
    arn = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/{repository}"
    assert allows(inline_policy("gen3d-t-sagemaker"), "ecr:BatchGetImage", arn), arn
    assert allows(inline_policy("gen3d-t-sagemaker"), "ecr:GetDownloadUrlForLayer", arn)


def test_setup_can_name_other_repositories(aws):
    assert main(["setup", "--name", "t", "--ecr-repository", "team/gen3d"]) == 0
    policy = inline_policy("gen3d-t-sagemaker")
    assert allows(
        policy, "ecr:BatchGetImage", f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/team/gen3d"
    )
    assert not allows(
        policy, "ecr:BatchGetImage", f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/gen3d-gpu"
    )


# ------------------------------------------------------------------ 3. batch transform

BATCH = ["batch", "--name", "t", "--input", "s3://b/in/", "--output", "s3://b/out/"]


def transform_jobs(out: str) -> list[dict]:
    return [b for _, op, b in dry_run_calls(out) if op == "CreateTransformJob"]


def test_gpu_batch_dry_run_sets_the_batch_ami(aws, capsys):
    assert main([*BATCH, "--instance-type", "ml.g5.xlarge", "--dry-run"]) == 0
    (job,) = transform_jobs(capsys.readouterr().out)
    assert job["TransformResources"]["TransformAmiVersion"] == "al2-ami-sagemaker-batch-gpu-535"
    assert main([*BATCH, "--instance-type", "ml.m5.large", "--dry-run"]) == 0
    (job,) = transform_jobs(capsys.readouterr().out)
    assert "TransformAmiVersion" not in job["TransformResources"]


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (["--instance-type", "ml.g5.xlarge", "--flavor", "gpu"], "supports CUDA 12.x at most"),
        (["--instance-type", "ml.p4d.24xlarge"], "batch transform does not offer it"),
    ],
)
def test_batch_refuses_what_it_cannot_run(aws, capsys, extra, reason):
    assert main([*BATCH, *extra, "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert reason in err and "Traceback" not in err


@pytest.mark.slow  # a second or more on 2 cores: whole CLI runs through botocore
def test_batch_of_an_async_model_waits_as_long_as_the_model_does(model_artifact, capsys):
    assert deploy("t", "async", "--model-data", MODEL_DATA) == 0
    # the endpoint's ml.g4dn with the CUDA 13 image: refused, with the reason
    assert main([*BATCH]) == 1
    assert "CUDA 13.0" in capsys.readouterr().err
    assert main([*BATCH, "--instance-type", "ml.m5.large"]) == 0
    sm = boto3.client("sagemaker")
    (summary,) = sm.list_transform_jobs()["TransformJobSummaries"]
    job = sm.describe_transform_job(TransformJobName=summary["TransformJobName"])
    # the async model's request deadline is 900 s; SageMaker's default would be 600 s
    assert job["ModelClientConfig"]["InvocationsTimeoutInSeconds"] >= 900


# ------------------------------------------------------------------ 6. endpoint updates


def _autoscaling() -> tuple[list[dict], list[dict], list[dict]]:
    aas = boto3.client("application-autoscaling")
    targets = aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    policies = aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    alarms = boto3.client("cloudwatch").describe_alarms()["MetricAlarms"]
    # the scale-from-zero and scale-in alarms only (deploy also creates monitoring alarms)
    names = (autoscaling.alarm_name("t"), autoscaling.idle_alarm_name("t"))
    ours = sorted((a for a in alarms if a["AlarmName"] in names), key=lambda a: a["AlarmName"])
    return targets, policies, ours


@pytest.mark.slow  # a second or more on 2 cores: whole CLI runs through botocore
def test_a_failed_instance_type_update_keeps_autoscaling(model_artifact, capsys):
    assert deploy("t", "async", "--model-data", MODEL_DATA) == 0
    # a new instance type: AWS needs the target deregistered for the update. The
    # emulator has no UpdateEndpoint, so the update fails here as a real one can.
    assert (
        deploy("t", "async", "--model-data", MODEL_DATA, "--instance-type", "ml.g4dn.2xlarge") == 1
    )
    targets, policies, alarms = _autoscaling()
    (target,) = targets
    assert (target["MinCapacity"], target["MaxCapacity"]) == (0, 2)
    by_name = {p["PolicyName"]: p for p in policies}
    tracking, from_zero = autoscaling.policy_names("t")
    to_zero = autoscaling.scale_in_policy_name("t")
    assert set(by_name) == {tracking, from_zero, to_zero}
    alarm_of = {a["AlarmName"]: a for a in alarms}
    assert alarm_of[autoscaling.alarm_name("t")]["AlarmActions"] == [
        by_name[from_zero]["PolicyARN"]
    ]
    assert alarm_of[autoscaling.idle_alarm_name("t")]["AlarmActions"] == [
        by_name[to_zero]["PolicyARN"]
    ]


@pytest.mark.slow  # a second or more on 2 cores: whole CLI runs through botocore
def test_a_model_update_leaves_autoscaling_registered(model_artifact, capsys):
    assert deploy("t", "async", "--model-data", MODEL_DATA) == 0
    before = _autoscaling()
    # same instance type, new environment: AWS updates with autoscaling in place, so
    # nothing is deregistered (the emulator's missing UpdateEndpoint fails the command)
    assert deploy("t", "async", "--model-data", MODEL_DATA, "--env", "GEN3D_LOG_LEVEL=debug") == 1
    assert _autoscaling() == before


@pytest.mark.slow  # a second or more on 2 cores: whole CLI runs through botocore
def test_an_update_counts_only_when_in_service_on_the_new_config(model_artifact):
    assert deploy("t", "realtime", "--model-data", MODEL_DATA) == 0
    sm = boto3.client("sagemaker")
    current = sm.describe_endpoint(EndpointName="t")["EndpointConfigName"]
    wait_for_endpoint(sm, "t", poll_s=0.01, timeout_s=5, progress=lambda _: None, config=current)
    # InService, but on another config than the update asked for: rolled back
    with pytest.raises(AwsCommandError, match="rolled back"):
        wait_for_endpoint(
            sm, "t", poll_s=0.01, timeout_s=5, progress=lambda _: None, config="t-newer"
        )


# ------------------------------------------------------------------ 7. inference components


def test_component_start_up_timeouts_follow_the_artifact(capsys):
    spec = DeploySpec("t", "realtime", GPU_IMAGE, MODEL_DATA, ROLE, instance_type="ml.g5.xlarge")
    plan = Plan(dry_run=True)
    inference_components.ensure(plan, AwsClients("us-east-1"), spec, "t-m", model_bytes=10**10)
    printed = list(dry_run_calls(capsys.readouterr().out))
    calls = {op: body for _, op, body in reversed(printed)}  # the first of each operation
    startup = calls["CreateInferenceComponent"]["Specification"]["StartupParameters"]
    assert (
        startup["ModelDataDownloadTimeoutInSeconds"],
        startup["ContainerStartupHealthCheckTimeoutInSeconds"],
    ) == endpoint_spec.startup_timeouts(10**10)
    update = calls["UpdateInferenceComponent"]
    assert update["Specification"]["ModelName"] == "t-m"
    rollback = update["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    assert rollback == [{"AlarmName": calls["PutMetricAlarm"]["AlarmName"]}]


def test_a_component_serving_another_model_is_updated():
    spec = DeploySpec("t", "realtime", GPU_IMAGE, MODEL_DATA, ROLE, instance_type="ml.g5.xlarge")
    wanted = inference_components.component_request(spec, "t-new", model_bytes=None)
    # DescribeInferenceComponent's Specification (a summary of the one it was created with)
    served = {"Specification": {**wanted["Specification"], "ModelName": "t-old"}}
    assert inference_components.specification_changed(served, wanted["Specification"])
    same = {"Specification": dict(wanted["Specification"])}
    assert not inference_components.specification_changed(same, wanted["Specification"])


# ------------------------------------------------------------------ 8. GPU sizing


def test_sam3d_on_a_16_gb_gpu_is_refused_with_the_reason(aws, capsys):
    args = ["--backend", "sam3d", "--instance-type", "ml.g4dn.xlarge", "--dry-run"]
    assert deploy("t", "async", *args, image=f"{ECR}/gen3d-sam3d:0a1b2c3d") == 1
    err = capsys.readouterr().err
    assert "at least 24 GB" in err and "16 GB" in err and "ml.g6e.xlarge" in err


@pytest.mark.parametrize(
    ("instance", "offload"),
    [("ml.g5.2xlarge", "1"), ("ml.g6.2xlarge", "1"), ("ml.g6e.xlarge", None)],
)
def test_sam3d_gets_stage_offload_on_24_gb_gpus(aws, capsys, instance, offload):
    args = ["--backend", "sam3d", "--instance-type", instance, "--dry-run"]
    assert deploy("t", "async", *args, image=f"{ECR}/gen3d-sam3d:0a1b2c3d") == 0
    (model,) = [b for _, op, b in dry_run_calls(capsys.readouterr().out) if op == "CreateModel"]
    assert model["PrimaryContainer"]["Environment"].get("GEN3D_STAGE_OFFLOAD") == offload


@pytest.mark.slow  # a second or more on 2 cores: whole CLI runs through botocore
def test_realtime_is_refused_for_a_backend_slower_than_the_invocation_limit(aws, capsys):
    base = ["--backend", "sam3d", "--instance-type", "ml.g6e.xlarge", "--dry-run"]
    image = f"{ECR}/gen3d-sam3d:0a1b2c3d"
    assert deploy("t", "realtime", *base, image=image) == 1
    err = capsys.readouterr().err
    assert "60 s" in err and "--mode async" in err
    assert deploy("t", "realtime", *base, "--seconds-per-image", "20", image=image) == 0
    assert deploy("t", "realtime", *base, "--seconds-per-image", "58", image=image) == 1


def test_plan_memory_and_cost_read_the_deploy_table():
    from gen3d.cost.model import estimate
    from gen3d.cost.prices import load_prices
    from gen3d.cost.workload import Workload
    from gen3d.model_opt.memory_plan import GPUS, parse_gpu

    assert GPUS["t4"].memory_gib == instances.gpu_of("ml.g4dn.xlarge").usable_gib
    assert parse_gpu("ml.g6e.xlarge").memory_gib == instances.gpu_of("ml.g6e.xlarge").usable_gib
    options = estimate(Workload(100, 60.0, "ml.g4dn.xlarge", "sam3d"), load_prices())
    async_option = next(o for o in options if o.option == "async_scale_to_zero")
    assert any("deploy refuses" in c and "24 GB" in c for c in async_option.caveats)


def test_cuda_13_images_are_refused_on_volta(aws, capsys):
    assert deploy("t", "async", "--instance-type", "ml.p3.2xlarge", "--dry-run") == 1
    assert "compute capability 7.5" in capsys.readouterr().err


# ------------------------------------------------------------------ 10-12. smaller


def test_teardown_deletes_inference_component_logs(aws, capsys):
    logs = boto3.client("logs")
    group = "/aws/sagemaker/InferenceComponents/t-component"
    logs.create_log_group(logGroupName=group, tags={"gen3d:deployment": "t"})
    assert main(["teardown", "--name", "t", "--poll", "0.01"]) == 0
    assert logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"] == []


def test_scale_to_zero_gives_component_logs_a_retention_the_role_may_write(aws, capsys):
    args = ["--scale-to-zero", "--model-data", MODEL_DATA, "--dry-run"]
    assert deploy("t", "realtime", *args) == 0
    calls = list(dry_run_calls(capsys.readouterr().out))
    groups = [b["logGroupName"] for _, op, b in calls if op == "PutRetentionPolicy"]
    assert "/aws/sagemaker/InferenceComponents/t-component" in groups
    assert main(["setup", "--name", "t"]) == 0
    group = "/aws/sagemaker/InferenceComponents/t-component"
    arn = f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{group}:log-stream:x"
    assert allows(inline_policy("gen3d-t-sagemaker"), "logs:PutLogEvents", arn)


@pytest.mark.slow  # a second or more on 2 cores: whole CLI runs through botocore
def test_budget_counts_only_the_deployments_tagged_costs(aws):
    args = ["setup", "--name", "t", "--budget-usd", "40", "--budget-email", "ops@example.com"]
    assert main(args) == 0
    budget = boto3.client("budgets").describe_budget(AccountId=ACCOUNT, BudgetName="gen3d-t")
    assert budget["Budget"]["CostFilters"] == {"TagKeyValue": ["user:gen3d:deployment$t"]}


def test_trigger_role_names_the_endpoint_arn_in_lower_case(aws):
    assert main(["setup", "--name", "MyApp"]) == 0
    policy = inline_policy("gen3d-MyApp-upload-trigger")
    # SageMaker's ARN for endpoint "MyApp" is ...:endpoint/myapp; IAM compares exactly
    arn = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/myapp"
    assert allows(policy, "sagemaker:InvokeEndpointAsync", arn)


def test_a_truncated_bucket_name_does_not_end_in_a_hyphen():
    # 6 + 40 + 1 + 12 + 1 = 60 characters, then "us-" is cut at 63
    name = storage.default_bucket_name("a" * 40, ACCOUNT, "us-east-1")
    assert re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", name), name


def test_an_uncompressed_model_prefix_deploys_as_a_model_data_source(aws, capsys):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=MODEL_BUCKET)
    sizes = (("proxy/weights.safetensors", 3_000_000), ("proxy/gen3d-manifest.json", 200_000))
    for key, size in sizes:
        s3.put_object(Bucket=MODEL_BUCKET, Key=key, Body=b"\0" * size)
    assert deploy("t", "realtime", "--model-data", f"s3://{MODEL_BUCKET}/proxy/") == 0
    # sized as the sum of the objects under the prefix (what SageMaker copies)
    assert f"size of s3://{MODEL_BUCKET}/proxy/: 3.2 MB" in capsys.readouterr().out
    sm = boto3.client("sagemaker")
    config = sm.describe_endpoint_config(
        EndpointConfigName=sm.describe_endpoint(EndpointName="t")["EndpointConfigName"]
    )
    container = sm.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])[
        "PrimaryContainer"
    ]
    assert "ModelDataUrl" not in container
    assert container["ModelDataSource"]["S3DataSource"] == {
        "S3Uri": f"s3://{MODEL_BUCKET}/proxy/",
        "S3DataType": "S3Prefix",
        "CompressionType": "None",
    }


def test_the_lambda_waits_for_its_code_update_before_its_configuration(aws):
    lam = boto3.client("lambda")
    calls: list[str] = []
    lam.meta.events.register("before-call.lambda", lambda model, **_: calls.append(model.name))
    plan = Plan(out=lambda _: None)
    role = f"arn:aws:iam::{ACCOUNT}:role/gen3d-t-upload-trigger"
    boto3.client("iam").create_role(
        RoleName="gen3d-t-upload-trigger",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )
    args = {"deployment": "t", "endpoint": "t", "role_arn": role, "input_prefix": "input/"}
    ensure_function(plan, lam, **{**args, "input_prefix": "other/"})
    # an outdated zip and another environment: both the code and the configuration change
    lam.update_function_code(FunctionName="gen3d-t-upload", ZipFile=b"PK\x05\x06" + b"\0" * 18)
    calls.clear()
    ensure_function(plan, lam, **args)
    code = calls.index("UpdateFunctionCode")
    config = calls.index("UpdateFunctionConfiguration")
    assert "GetFunctionConfiguration" in calls[code + 1 : config]


# ------------------------------------------------------------------ 9. backend from the image


@pytest.mark.parametrize(
    ("image", "backend"),
    [
        (f"{ECR}/gen3d-sam3d:0a1b2c3d", "sam3d"),
        (f"{ECR}/gen3d:0.1.0-sam3d", "sam3d"),
        (GPU_IMAGE, "silhouette"),  # proxy only when asked
        (f"{ECR}/gen3d-cpu:0a1b2c3d", "silhouette"),
        (f"{ECR}/custom:1", "silhouette"),  # no flavor in the name: the old default
    ],
)
def test_the_backend_defaults_to_the_image_flavors(aws, capsys, image, backend):
    assert deploy("t", "async", "--instance-type", "ml.g6e.xlarge", "--dry-run", image=image) == 0
    out = capsys.readouterr().out
    assert f"backend {backend}" in out.splitlines()[0]
    (model,) = [b for _, op, b in dry_run_calls(out) if op == "CreateModel"]
    assert model["PrimaryContainer"]["Environment"]["GEN3D_BACKEND"] == backend


@pytest.mark.parametrize(
    ("image", "backend", "words"),
    [
        (f"{ECR}/gen3d-sam3d:0a1b2c3d", "silhouette", "does not run on the sam3d image"),
        (f"{ECR}/gen3d-sam3d:0a1b2c3d", "proxy", "deploy a gpu image for proxy"),
        (GPU_IMAGE, "sam3d", "deploy a sam3d image for sam3d"),
        (f"{ECR}/gen3d-cpu:0a1b2c3d", "sam3d", "no torch"),
        (f"{ECR}/gen3d-cpu:0a1b2c3d", "proxy", "does not run on the cpu image"),
    ],
)
def test_a_backend_the_image_cannot_serve_is_refused_with_the_reason(
    aws, capsys, image, backend, words
):
    args = ["--backend", backend, "--instance-type", "ml.g6e.xlarge", "--dry-run"]
    assert deploy("t", "async", *args, image=image) == 1
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert boto3.client("sagemaker").list_models()["Models"] == []


def test_a_sam3d_image_without_an_instance_type_gets_a_24_gb_gpu_with_offload(aws, capsys):
    """`make deploy-async IMAGE_URI=…/gen3d-sam3d:v1` (no BACKEND, no instance type)."""
    assert deploy("t", "async", "--dry-run", image=f"{ECR}/gen3d-sam3d:v1") == 0
    calls = list(dry_run_calls(capsys.readouterr().out))
    (model,) = [b for _, op, b in calls if op == "CreateModel"]
    (config,) = [b for _, op, b in calls if op == "CreateEndpointConfig"]
    env = model["PrimaryContainer"]["Environment"]
    assert env["GEN3D_BACKEND"] == "sam3d" and env["GEN3D_STAGE_OFFLOAD"] == "1"
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.g6.2xlarge"
