"""`gen3d deploy` against a real moto server (tests/conftest.py `aws` fixture)."""

from __future__ import annotations

import json

import boto3
import pytest
from aws_requests import MODEL_BUCKET, StrictValidationError
from aws_requests import validate_strictly as validate_request

from gen3d.aws import autoscaling, endpoint_spec, inference_components
from gen3d.aws.clients import TAG_KEY
from gen3d.aws.endpoint_spec import DeploySpec
from gen3d.aws.platform import flavor
from gen3d.aws.scaling_params import ASYNC_SCALING
from gen3d.cli.main import main

ROLE = "arn:aws:iam::123456789012:role/gen3d-t-sagemaker"
ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
GPU_IMAGE = f"{ECR}/gen3d-gpu:0a1b2c3d"
CPU_IMAGE = f"{ECR}/gen3d-cpu:0a1b2c3d"
MODEL_DATA = f"s3://{MODEL_BUCKET}/silhouette/model.tar.gz"


def deploy_args(
    name: str = "t", mode: str = "async", *extra: str, image: str = GPU_IMAGE
) -> list[str]:
    return [
        "deploy",
        "--name",
        name,
        "--mode",
        mode,
        "--image",
        image,
        "--model-data",
        MODEL_DATA,
        "--role",
        ROLE,
        "--poll",
        "0.01",
        "--timeout",
        "30",
        *extra,
    ]


def tags_of(sagemaker, arn: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=arn)["Tags"]}


@pytest.mark.slow  # a second or more on 2 cores: whole CLI runs through botocore
def test_async_deploy_scales_to_zero_with_alarm_driven_step_policy(model_artifact, capsys):
    assert main(deploy_args("t", "async", "--notify-email", "ops@example.com")) == 0
    out = capsys.readouterr().out
    assert "InService" in out

    sm = boto3.client("sagemaker")
    endpoint = sm.describe_endpoint(EndpointName="t")
    assert endpoint["EndpointStatus"] == "InService"
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    variant = config["ProductionVariants"][0]
    assert variant["InstanceType"] == "ml.g4dn.xlarge"
    assert variant["InferenceAmiVersion"] == flavor("gpu")["inference_ami_version"]
    assert (
        variant["ModelDataDownloadTimeoutInSeconds"],
        variant["ContainerStartupHealthCheckTimeoutInSeconds"],
    ) == endpoint_spec.startup_timeouts(model_artifact)
    async_config = config["AsyncInferenceConfig"]
    # silhouette runs one sample at a time: more in flight would wait in the container
    assert async_config["ClientConfig"]["MaxConcurrentInvocationsPerInstance"] == 1
    output = async_config["OutputConfig"]
    bucket = output["S3OutputPath"].split("/")[2]
    assert output["S3OutputPath"] == f"s3://{bucket}/async/output/"
    assert output["S3FailurePath"] == f"s3://{bucket}/async/failure/"
    assert output["NotificationConfig"]["SuccessTopic"].endswith(":gen3d-t-success")
    assert output["NotificationConfig"]["ErrorTopic"].endswith(":gen3d-t-error")
    model = sm.describe_model(ModelName=variant["ModelName"])
    assert model["PrimaryContainer"]["Environment"]["GEN3D_BACKEND"] == "silhouette"
    assert model["PrimaryContainer"]["ModelDataUrl"] == MODEL_DATA
    for arn in (endpoint["EndpointArn"], config["EndpointConfigArn"], model["ModelArn"]):
        assert tags_of(sm, arn) == {TAG_KEY: "t"}

    aas = boto3.client("application-autoscaling")
    (target,) = aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert target["ResourceId"] == "endpoint/t/variant/AllTraffic"
    assert (target["MinCapacity"], target["MaxCapacity"]) == (0, 2)
    policies = {
        p["PolicyName"]: p
        for p in aas.describe_scaling_policies(
            ServiceNamespace="sagemaker", ResourceId=target["ResourceId"]
        )["ScalingPolicies"]
    }
    tracking_name, step_name = autoscaling.policy_names("t")
    assert set(policies) == {tracking_name, step_name, autoscaling.scale_in_policy_name("t")}
    tracking = policies[tracking_name]["TargetTrackingScalingPolicyConfiguration"]
    metric = tracking["CustomizedMetricSpecification"]
    assert metric["MetricName"] == "ApproximateBacklogSizePerInstance"
    assert metric["Dimensions"] == [{"Name": "EndpointName", "Value": "t"}]
    assert tracking["TargetValue"] == ASYNC_SCALING.backlog_target_per_instance
    assert tracking["ScaleInCooldown"] == ASYNC_SCALING.scale_in_cooldown_s
    # the empty-backlog alarm is the only scale-in (docs/deploy.md, the races)
    assert tracking["DisableScaleIn"] is True
    step = policies[step_name]
    step_config = step["StepScalingPolicyConfiguration"]
    assert (
        step_config["StepAdjustments"][0]["ScalingAdjustment"]
        == ASYNC_SCALING.step_adjustment_instances
    )

    cw = boto3.client("cloudwatch")
    alarms = cw.describe_alarms()["MetricAlarms"]
    (alarm,) = [a for a in alarms if a["AlarmName"] == autoscaling.alarm_name("t")]
    assert alarm["MetricName"] == "HasBacklogWithoutCapacity"
    assert alarm["Dimensions"] == [{"Name": "EndpointName", "Value": "t"}]
    assert alarm["AlarmActions"] == [step["PolicyARN"]]
    assert alarm["Period"] == ASYNC_SCALING.backlog_alarm_period_s
    assert alarm["EvaluationPeriods"] == ASYNC_SCALING.backlog_alarm_evaluation_periods

    sns = boto3.client("sns")
    topic = output["NotificationConfig"]["SuccessTopic"]
    subs = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subs] == [("email", "ops@example.com")]
    (group,) = boto3.client("logs").describe_log_groups(
        logGroupNamePrefix="/aws/sagemaker/Endpoints/t"
    )["logGroups"]
    assert group["retentionInDays"] == 30


def _state() -> dict:
    """Everything deploy makes, as read back from the emulator."""
    sm = boto3.client("sagemaker")
    aas = boto3.client("application-autoscaling")
    return {
        "models": sorted(m["ModelName"] for m in sm.list_models()["Models"]),
        "configs": sorted(
            c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]
        ),
        "endpoint": sm.describe_endpoint(EndpointName="t")["EndpointConfigName"],
        "policies": sorted(
            p["PolicyARN"]
            for p in aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
        ),
        "alarms": [
            (a["AlarmName"], a["AlarmConfigurationUpdatedTimestamp"], a["AlarmActions"])
            for a in boto3.client("cloudwatch").describe_alarms()["MetricAlarms"]
        ],
        "topics": sorted(t["TopicArn"] for t in boto3.client("sns").list_topics()["Topics"]),
    }


@pytest.mark.slow  # a second or more on 2 cores: whole CLI runs through botocore
def test_second_deploy_changes_nothing(model_artifact, capsys):
    assert main(deploy_args()) == 0
    assert "updated" not in capsys.readouterr().out  # a first run only creates
    before = _state()
    capsys.readouterr()
    assert main(deploy_args()) == 0
    out = capsys.readouterr().out
    assert "already up to date, nothing changed" in out
    assert "created" not in out and "updated" not in out
    assert _state() == before


def _idle_alarm_and_scale_in_policy(endpoint: str = "t") -> tuple[dict, dict]:
    (alarm,) = boto3.client("cloudwatch").describe_alarms(
        AlarmNames=[autoscaling.idle_alarm_name(endpoint)]
    )["MetricAlarms"]
    (policy,) = [
        p
        for p in boto3.client("application-autoscaling").describe_scaling_policies(
            ServiceNamespace="sagemaker", ResourceId=f"endpoint/{endpoint}/variant/AllTraffic"
        )["ScalingPolicies"]
        if p["PolicyName"] == autoscaling.scale_in_policy_name(endpoint)
    ]
    return alarm, policy


def test_async_deploy_scales_in_to_zero_on_an_empty_backlog(model_artifact, capsys):
    assert main(deploy_args("t", "async", "--idle-minutes", "7")) == 0
    alarm, policy = _idle_alarm_and_scale_in_policy()
    # what it watches: items queued or being processed, endpoint-wide, one-minute periods
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SageMaker", "ApproximateBacklogSize")
    assert alarm["Dimensions"] == [{"Name": "EndpointName", "Value": "t"}]
    assert (alarm["Statistic"], alarm["Period"]) == ("Maximum", 60)
    # empty (Maximum < 1) in each of the last 7 minutes, and missing data is not "empty"
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (7, 7)
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("LessThanThreshold", 1.0)
    assert alarm["TreatMissingData"] == "notBreaching"
    assert alarm["AlarmActions"] == [policy["PolicyARN"]]
    tags = boto3.client("cloudwatch").list_tags_for_resource(ResourceARN=alarm["AlarmArn"])
    assert {"Key": TAG_KEY, "Value": "t"} in tags["Tags"]
    # the policy sets the capacity to exactly 0 for every value at or under the threshold
    config = policy["StepScalingPolicyConfiguration"]
    assert policy["PolicyType"] == "StepScaling"
    assert config["AdjustmentType"] == "ExactCapacity"
    assert config["StepAdjustments"] == [{"MetricIntervalUpperBound": 0.0, "ScalingAdjustment": 0}]


def test_a_new_idle_minutes_updates_only_the_alarm(model_artifact, capsys):
    assert main(deploy_args("t", "async", "--idle-minutes", "3")) == 0
    before = _state()
    capsys.readouterr()
    assert main(deploy_args("t", "async", "--idle-minutes", "3")) == 0
    assert "already up to date, nothing changed" in capsys.readouterr().out
    assert _state() == before
    assert main(deploy_args("t", "async", "--idle-minutes", "10")) == 0
    out = capsys.readouterr().out
    updated = [line for line in out.splitlines() if line.strip().startswith("updated")]
    assert len(updated) == 1 and autoscaling.idle_alarm_name("t") in updated[0]
    alarm, _ = _idle_alarm_and_scale_in_policy()
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (10, 10)
    assert _state()["policies"] == before["policies"]


def test_redeploy_brings_an_older_deployment_s_scaling_up_to_date(model_artifact, capsys):
    # an endpoint deployed before the empty-backlog scale-in existed: target tracking with
    # its own scale-in, and neither the scale-in policy nor its alarm
    assert main(deploy_args("t", "async")) == 0
    aas = boto3.client("application-autoscaling")
    old = autoscaling.target_tracking_request("t", "AllTraffic")
    old["TargetTrackingScalingPolicyConfiguration"]["DisableScaleIn"] = False
    aas.put_scaling_policy(**old)
    boto3.client("cloudwatch").delete_alarms(AlarmNames=[autoscaling.idle_alarm_name("t")])
    aas.delete_scaling_policy(
        PolicyName=autoscaling.scale_in_policy_name("t"),
        ServiceNamespace="sagemaker",
        ResourceId="endpoint/t/variant/AllTraffic",
        ScalableDimension=autoscaling.DIMENSION,
    )
    capsys.readouterr()
    assert main(deploy_args("t", "async")) == 0
    out = capsys.readouterr().out
    assert "updated target tracking" in " ".join(out.split())
    alarm, policy = _idle_alarm_and_scale_in_policy()
    assert alarm["AlarmActions"] == [policy["PolicyARN"]]
    (tracking,) = [
        p
        for p in aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
        if p["PolicyName"] == autoscaling.policy_names("t")[0]
    ]
    assert tracking["TargetTrackingScalingPolicyConfiguration"]["DisableScaleIn"] is True


def test_teardown_removes_the_scale_in_alarm_and_policy(model_artifact):
    assert main(deploy_args("t", "async", "--idle-minutes", "3")) == 0
    _idle_alarm_and_scale_in_policy()  # both exist
    assert main(["teardown", "--name", "t", "--poll", "0.01"]) == 0
    cw = boto3.client("cloudwatch")
    assert cw.describe_alarms(AlarmNames=[autoscaling.idle_alarm_name("t")])["MetricAlarms"] == []
    aas = boto3.client("application-autoscaling")
    assert aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"] == []


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--mode", "async", "--idle-minutes", "0"), "--idle-minutes must be 1-60, not 0"),
        (("--mode", "async", "--idle-minutes", "61"), "--idle-minutes must be 1-60, not 61"),
        (("--mode", "realtime", "--idle-minutes", "3"), "--idle-minutes applies to --mode async"),
    ],
)
def test_idle_minutes_out_of_range_or_mode_is_refused_before_any_call(
    unreachable_aws, capsys, extra, message
):
    args = deploy_args("t", "async")
    mode_at = args.index("--mode")
    del args[mode_at : mode_at + 2]
    assert main([*args, *extra]) == 1
    err = capsys.readouterr().err
    assert message in err and "Could not connect" not in err


def test_a_changed_spec_gets_new_model_and_config_names():
    # Models and configs are immutable in SageMaker; their names carry a hash of the body,
    # so a change makes new ones (and update_endpoint) instead of silently reusing the old.
    base = DeploySpec("t", "realtime", CPU_IMAGE, MODEL_DATA, ROLE, instance_type="ml.m5.large")
    same = DeploySpec("t", "realtime", CPU_IMAGE, MODEL_DATA, ROLE, instance_type="ml.m5.large")
    proxy = DeploySpec(
        "t", "realtime", CPU_IMAGE, MODEL_DATA, ROLE, instance_type="ml.m5.large", backend="proxy"
    )
    bigger = DeploySpec("t", "realtime", CPU_IMAGE, MODEL_DATA, ROLE, instance_type="ml.m5.xlarge")
    name = lambda s: endpoint_spec.model_request(s)["ModelName"]  # noqa: E731
    config = lambda s: endpoint_spec.endpoint_config_request(  # noqa: E731
        s, name(s), model_bytes=1
    )["EndpointConfigName"]
    assert name(base) == name(same) and config(base) == config(same)
    assert name(base) != name(proxy)
    assert name(base) == name(bigger) and config(base) != config(bigger)


def test_cpu_flavor_creates_a_serverless_config(model_artifact, capsys):
    image = push_image("gen3d-cpu", "0a1b2c3d", 900_000_000)
    assert main(deploy_args("s", "serverless", "--memory-mb", "3072", image=image)) == 0
    assert "size of" in capsys.readouterr().out
    sm = boto3.client("sagemaker")
    config = sm.describe_endpoint_config(
        EndpointConfigName=sm.describe_endpoint(EndpointName="s")["EndpointConfigName"]
    )
    (variant,) = config["ProductionVariants"]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 3072, "MaxConcurrency": 5}
    assert "InstanceType" not in variant and "InferenceAmiVersion" not in variant
    assert "AsyncInferenceConfig" not in config
    env = sm.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"]["Environment"]
    assert env["GEN3D_MAX_BODY_MB"] == "4" and env["GEN3D_DEVICE"] == "cpu"
    # serverless has no autoscaling of ours
    assert (
        boto3.client("application-autoscaling").describe_scalable_targets(
            ServiceNamespace="sagemaker"
        )["ScalableTargets"]
        == []
    )


@pytest.mark.parametrize(
    ("extra", "image", "reason"),
    [
        (["--backend", "sam3d"], CPU_IMAGE, "backend sam3d needs a GPU"),
        (["--backend", "proxy"], CPU_IMAGE, "backend proxy needs a GPU"),
        ([], GPU_IMAGE, "gpu (CUDA) image flavor"),
        (
            ["--flavor", "sam3d", "--backend", "silhouette"],
            f"{ECR}/custom:1",
            "sam3d (CUDA) image flavor",
        ),
        (["--memory-mb", "5000"], CPU_IMAGE, "1024-6144 MB in 1024 MB steps"),
        (["--memory-mb", "8192"], CPU_IMAGE, "1024-6144 MB in 1024 MB steps"),
    ],
)
def test_serverless_refusals_say_why_and_suggest_async(aws, capsys, extra, image, reason):
    assert main(deploy_args("s", "serverless", *extra, image=image)) == 1
    err = capsys.readouterr().err
    assert reason in err and "--mode async" in err
    assert "Traceback" not in err
    assert boto3.client("sagemaker").list_models()["Models"] == []


def push_image(repository: str, tag: str, size: int) -> str:
    """Register an image in the emulator's ECR (moto reports the config's size as
    imageSizeInBytes)."""
    ecr = boto3.client("ecr")
    ecr.create_repository(repositoryName=repository)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "size": size,
            "digest": "sha256:" + "a" * 64,
            "mediaType": "application/vnd.docker.container.image.v1+json",
        },
        "layers": [
            {
                "size": size,
                "digest": "sha256:" + "b" * 64,
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
            }
        ],
    }
    ecr.put_image(repositoryName=repository, imageManifest=json.dumps(manifest), imageTag=tag)
    return f"{ECR}/{repository}:{tag}"


def test_serverless_refuses_an_image_over_10_gb(model_artifact, capsys):
    image = push_image("gen3d-cpu", "big", 11_000_000_000)
    assert main(deploy_args("s", "serverless", image=image)) == 1
    err = capsys.readouterr().err
    assert "11.0 GB" in err and "up to 10 GB" in err and "--mode async" in err
    assert boto3.client("sagemaker").list_models()["Models"] == []


@pytest.mark.slow  # a second or more on 2 cores: whole CLI runs through botocore
def test_serverless_refuses_an_image_missing_from_ecr(model_artifact, capsys):
    assert main(deploy_args("s", "serverless", image=f"{ECR}/gen3d-cpu:absent")) == 1
    assert "not found in ECR" in capsys.readouterr().err


def test_realtime_deploy_is_instance_backed_without_autoscaling(model_artifact):
    assert main(deploy_args("r", "realtime", "--backend", "proxy")) == 0
    sm = boto3.client("sagemaker")
    config = sm.describe_endpoint_config(
        EndpointConfigName=sm.describe_endpoint(EndpointName="r")["EndpointConfigName"]
    )
    (variant,) = config["ProductionVariants"]
    assert variant["InstanceType"] == "ml.g4dn.xlarge" and variant["InitialInstanceCount"] == 1
    assert "AsyncInferenceConfig" not in config
    alarms = boto3.client("cloudwatch").describe_alarms()["MetricAlarms"]
    assert all(a["AlarmName"].startswith("r-gen3d-") for a in alarms)  # monitoring only


def test_bad_input_is_one_line_without_traceback(aws, capsys):
    assert main(deploy_args("bad_name!")) == 1
    assert (
        main(
            [
                "deploy",
                "--name",
                "t",
                "--mode",
                "async",
                "--image",
                GPU_IMAGE,
                "--role",
                "not-an-arn",
            ]
        )
        == 1
    )
    assert main(deploy_args("t", "async", "--env", "GEN3D_MAX_BATCH_SIZE=0")) == 1
    err = capsys.readouterr().err
    assert "--name 'bad_name!'" in err and "not an IAM role ARN" in err
    assert "GEN3D_MAX_BATCH_SIZE" in err and "Traceback" not in err


def test_missing_model_artifact_is_reported(aws, capsys):
    assert main(deploy_args("t", "async")) == 1
    assert (
        "--model-data s3://gen3d-test-models/silhouette/model.tar.gz: cannot read"
        in capsys.readouterr().err
    )


def test_an_aws_call_fails_at_the_closed_port(unreachable_aws, capsys):
    # the control for the dry-run tests below: without --dry-run the command does fail
    assert main(deploy_args("t", "async")) == 1
    assert "Could not connect" in capsys.readouterr().err


@pytest.mark.slow  # a second or more on 2 cores: whole CLI runs through botocore
@pytest.mark.parametrize("mode", ["async", "serverless", "realtime"])
def test_dry_run_prints_the_plan_and_makes_no_call(unreachable_aws, capsys, mode):
    image = CPU_IMAGE if mode == "serverless" else GPU_IMAGE
    assert main(deploy_args("t", mode, "--dry-run", image=image)) == 0
    out = capsys.readouterr().out
    assert "nothing was called" in out and "would ensure  model t-" in out
    assert '"ProductionVariants"' in out
    if mode == "async":
        assert "HasBacklogWithoutCapacity" in out and "ApproximateBacklogSizePerInstance" in out
        assert "TLS-only bucket policy" in out


def test_dry_run_with_idle_minutes_shows_the_scale_in_alarm_and_policy(unreachable_aws, capsys):
    assert main(deploy_args("t", "async", "--idle-minutes", "3", "--dry-run")) == 0
    out = capsys.readouterr().out
    assert "nothing was called" in out
    assert f"alarm {autoscaling.idle_alarm_name('t')} on ApproximateBacklogSize" in out
    assert "Maximum < 1 for 3 x 60 s" in out
    assert f"step scaling {autoscaling.scale_in_policy_name('t')} (capacity exactly 0)" in out
    assert '"AdjustmentType": "ExactCapacity"' in out and '"DisableScaleIn": true' in out
    assert '"EvaluationPeriods": 3' in out


def test_dry_run_of_realtime_scale_to_zero_shows_inference_components(unreachable_aws, capsys):
    assert main(deploy_args("t", "realtime", "--scale-to-zero", "--dry-run")) == 0
    out = capsys.readouterr().out
    assert "ManagedInstanceScaling" in out and "NoCapacityInvocationFailures" in out


def test_g5_endpoint_config_passes_the_service_model():
    # moto's own instance-type list lacks ml.g5; botocore's service model (ParamValidator
    # plus enum, max and pattern) is what we can check it against.
    for mode in ("async", "realtime"):
        spec = DeploySpec("t", mode, GPU_IMAGE, MODEL_DATA, ROLE, instance_type="ml.g5.xlarge")
        endpoint_spec.validate(spec)
        request = endpoint_spec.endpoint_config_request(
            spec,
            "t-model",
            model_bytes=10**10,
            output_path="s3://b/o/",
            failure_path="s3://b/f/",
            success_topic="arn:aws:sns:us-east-1:123456789012:s",
            error_topic="arn:aws:sns:us-east-1:123456789012:e",
        )
        validate_request("sagemaker", "CreateEndpointConfig", request)
        assert request["ProductionVariants"][0]["InferenceAmiVersion"]
        assert request["ProductionVariants"][0]["ModelDataDownloadTimeoutInSeconds"] == 320
    broken = {"EndpointConfigName": "x", "ProductionVariants": [{"ModelName": "m"}]}
    with pytest.raises(StrictValidationError, match="VariantName"):
        validate_request("sagemaker", "CreateEndpointConfig", broken)


def test_inference_component_requests_pass_the_service_model():
    spec = DeploySpec("t", "realtime", GPU_IMAGE, MODEL_DATA, ROLE, instance_type="ml.g5.xlarge")
    config = inference_components.endpoint_config_request(spec, model_bytes=None)
    validate_request("sagemaker", "CreateEndpointConfig", config)
    assert config["ProductionVariants"][0]["ManagedInstanceScaling"]["MinInstanceCount"] == 0
    assert "ModelName" not in config["ProductionVariants"][0]
    component = inference_components.component_request(spec, "t-model")
    validate_request("sagemaker", "CreateInferenceComponent", component)
    scaling = inference_components.autoscaling_requests(spec)
    target = scaling["register_scalable_target"]
    validate_request("application-autoscaling", "RegisterScalableTarget", target)
    assert target["MinCapacity"] == 0
    for key in ("target_tracking", "step_scaling"):
        validate_request("application-autoscaling", "PutScalingPolicy", scaling[key])
    validate_request("cloudwatch", "PutMetricAlarm", scaling["alarm"])
    for request in (
        autoscaling.target_tracking_request("t", "AllTraffic"),
        autoscaling.step_policy_request("t", "AllTraffic"),
    ):
        validate_request("application-autoscaling", "PutScalingPolicy", request)


@pytest.mark.parametrize(
    ("backend", "instance_type", "env", "expected"),
    [
        ("sam3d", "ml.g5.12xlarge", {}, 4),  # one worker per GPU, one sample each
        ("sam3d", "ml.p5.48xlarge", {}, 8),
        ("sam3d", "ml.g6e.xlarge", {}, 1),
        ("proxy", "ml.g5.12xlarge", {"GEN3D_MAX_BATCH_SIZE": "4"}, 16),
        ("silhouette", "ml.g5.12xlarge", {}, 1),  # a CPU backend: cores are not counted
        ("sam3d", "ml.g5.12xlarge", {"MODEL_SERVER_WORKERS": "2"}, 2),  # set: as set
    ],
)
def test_async_concurrency_counts_the_instance_s_gpus(backend, instance_type, env, expected):
    spec = DeploySpec(
        "t",
        "async",
        GPU_IMAGE,
        MODEL_DATA,
        ROLE,
        backend=backend,
        instance_type=instance_type,
        extra_env=env,
    )
    assert endpoint_spec.async_concurrency(spec) == expected


def test_every_multi_gpu_size_is_a_sagemaker_instance_type():
    import botocore.session

    from gen3d.serve import instances

    model = botocore.session.get_session().get_service_model("sagemaker")
    allowed = set(model.shape_for("ProductionVariantInstanceType").enum)
    for family, sizes in instances.MULTI_GPU_SIZES.items():
        for size, count in sizes.items():
            assert f"{family}.{size}" in allowed
            assert instances.gpu_count(f"{family}.{size}") == count
    assert instances.gpu_count("ml.g5.xlarge") == 1
    assert instances.gpu_count("ml.p5.4xlarge") == 1
    assert instances.gpu_count("ml.m5.large") == 0
