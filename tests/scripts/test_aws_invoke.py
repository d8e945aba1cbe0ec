"""`gen3d invoke --endpoint`, the upload-to-result Lambda handler and batch transform,
against a real moto server. Moto answers invocations from its documented static-result
queues (/moto-api/static/sagemaker/...). The client behind `gen3d invoke` is tested in
tests/client/."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import quote_plus

import boto3
import pytest
import requests
from gen3d_testing import EMULATED_ROLE, make_endpoint

from gen3d.aws import lambda_handler
from gen3d.aws.upload_trigger import code_sha256, package_handler
from gen3d.cli.main import main

ROLE = EMULATED_ROLE
# A bucket without the deployment's TLS-only policy: moto evaluates any conditional Deny
# statement as matching (it has no aws:SecureTransport context), so it would refuse the
# test's own writes over plain HTTP to a `gen3d setup` bucket.
IO_BUCKET = "gen3d-invoke-io"


@pytest.fixture
def clients(aws: str) -> dict:
    boto3.client("s3").create_bucket(Bucket=IO_BUCKET)
    return {
        "sagemaker": boto3.client("sagemaker"),
        "runtime": boto3.client("sagemaker-runtime"),
        "s3": boto3.client("s3"),
    }


def queue_async_results(moto: str, *results: dict) -> None:
    requests.post(
        f"{moto}/moto-api/static/sagemaker/async-endpoint-results",
        json={"results": list(results)},
        timeout=10,
    ).raise_for_status()


# --------------------------------------------------------------------- Lambda handler


def s3_event(bucket: str, key: str, event: str = "ObjectCreated:Put") -> dict:
    return {
        "Records": [
            {"eventName": event, "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}
        ]
    }


def test_handler_invokes_the_endpoint_with_the_uploaded_object(clients):
    make_endpoint("as", IO_BUCKET, asynchronous=True)
    runtime = clients["runtime"]
    # S3 events carry URL-encoded keys: "input/photo one.png" arrives as below
    (call,) = lambda_handler.handle(
        s3_event(IO_BUCKET, "input/photo+one.png"), runtime, endpoint="as"
    )
    assert call["input"] == f"s3://{IO_BUCKET}/input/photo one.png"
    # moto keys its async results by InputLocation: asking again with that exact input
    # returns the same output location, so the handler sent exactly this input
    again = runtime.invoke_endpoint_async(
        EndpointName="as", InputLocation=call["input"], ContentType="image/png"
    )
    assert again["OutputLocation"] == call["output"]
    other = runtime.invoke_endpoint_async(EndpointName="as", InputLocation="s3://x/other.png")
    assert other["OutputLocation"] != call["output"]


def test_handler_skips_other_prefixes_events_and_types(clients):
    make_endpoint("as", IO_BUCKET, asynchronous=True)
    runtime = clients["runtime"]
    assert (
        lambda_handler.handle(s3_event(IO_BUCKET, "async/output/a.png"), runtime, endpoint="as")
        == []
    )
    assert (
        lambda_handler.handle(
            s3_event(IO_BUCKET, "input/a.png", "ObjectRemoved:Delete"), runtime, endpoint="as"
        )
        == []
    )
    assert (
        lambda_handler.handle(s3_event(IO_BUCKET, "input/notes.txt"), runtime, endpoint="as") == []
    )


def s3_events(bucket: str, *objects: dict) -> dict:
    """One ObjectCreated record per object ({"key": URL-encoded key, "size": ...})."""
    return {
        "Records": [
            {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": bucket}, "object": o}}
            for o in objects
        ]
    }


def test_handler_logs_keys_as_json_and_skips_control_characters(clients, capsys):
    """A key is the uploader's text: with an encoded newline it once printed a second log
    line that was a whole embedded-metric (EMF) object, forging a metric."""
    make_endpoint("as", IO_BUCKET, asynchronous=True)
    emf = '{"_aws":{"CloudWatchMetrics":[{"Namespace":"Gen3D","Metrics":[{"Name":"x"}]}]},"x":1}'
    forged = "input/a.png\n" + emf + "\n.png"
    quoted = 'input/"quoted" {"_aws":1}.png'
    calls = lambda_handler.handle(
        s3_events(IO_BUCKET, {"key": quote_plus(forged)}, {"key": quote_plus(quoted)}),
        clients["runtime"],
        endpoint="as",
    )
    assert [c["input"] for c in calls] == [f"s3://{IO_BUCKET}/{quoted}"]
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2  # one skipped, one invoked: nothing split across lines
    skipped, invoked = (json.loads(line) for line in lines)
    assert "_aws" not in skipped and "_aws" not in invoked
    assert skipped["event"] == "skipped" and skipped["key"] == forged
    assert invoked["event"] == "invoked" and invoked["input"].endswith(quoted)


def test_handler_inference_ids_never_collide(clients):
    make_endpoint("as", IO_BUCKET, asynchronous=True)
    long_tail = "x" * 200 + ".png"
    keys = ["input/a b.png", "input/a+b.png", "input/a#b.png"]
    keys += [f"input/one/{long_tail}", f"input/two/{long_tail}"]  # differ only at the start
    runtime = StubbedIds(clients["runtime"])
    calls = lambda_handler.handle(
        s3_events(IO_BUCKET, *({"key": quote_plus(k)} for k in keys)), runtime, endpoint="as"
    )
    assert [c["input"] for c in calls] == [f"s3://{IO_BUCKET}/{k}" for k in keys]
    ids = runtime.sent_ids
    assert len(set(ids)) == len(keys) and all(len(i) <= 64 for i in ids)
    assert ids[0].startswith("a-b.png-")  # still readable: the file name leads


class StubbedIds:
    """The real moto client, remembering the InferenceId of each call it passes on."""

    def __init__(self, runtime) -> None:
        self.runtime, self.sent_ids = runtime, []

    def invoke_endpoint_async(self, **request):
        self.sent_ids.append(request["InferenceId"])
        return self.runtime.invoke_endpoint_async(**request)


def test_handler_skips_an_object_over_the_body_limit(clients, capsys):
    make_endpoint("as", IO_BUCKET, asynchronous=True)
    limit = lambda_handler.DEFAULT_MAX_INPUT_BYTES
    event = s3_events(
        IO_BUCKET, {"key": "input/big.png", "size": limit + 1}, {"key": "input/ok.png", "size": 9}
    )
    calls = lambda_handler.handle(event, clients["runtime"], endpoint="as")
    assert [c["input"] for c in calls] == [f"s3://{IO_BUCKET}/input/ok.png"]
    skipped = json.loads(capsys.readouterr().out.splitlines()[0])
    assert skipped["key"] == "input/big.png" and "over the model's" in skipped["reason"]


def test_handler_package_is_self_contained_and_reproducible(tmp_path: Path):
    archive = package_handler()
    assert archive == package_handler() and code_sha256(archive) == code_sha256(archive)
    path = tmp_path / "function.zip"
    path.write_bytes(archive)
    assert zipfile.ZipFile(path).namelist() == ["lambda_handler.py"]
    # import it from the zip alone, as Lambda does (no access to the scripts package)
    probe = (
        "import lambda_handler as h; "
        "assert callable(h.handler); print(h.content_type_for('input/x.JPG'))"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(path)!r}); {probe}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "image/jpeg"


@pytest.mark.slow  # a second or more on 2 cores: whole CLI runs through botocore
def test_deploy_wires_the_upload_notification(aws):
    assert main(["setup", "--name", "t"]) == 0
    assert (
        main(
            [
                "deploy",
                "--name",
                "t",
                "--mode",
                "async",
                "--image",
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/gen3d-gpu:1",
                "--role",
                ROLE,
                "--poll",
                "0.01",
                "--upload-trigger-role",
                "arn:aws:iam::123456789012:role/gen3d-t-upload-trigger",
            ]
        )
        == 0
    )
    bucket = "gen3d-t-123456789012-us-east-1"
    config = boto3.client("s3").get_bucket_notification_configuration(Bucket=bucket)
    (wired,) = config["LambdaFunctionConfigurations"]
    function = boto3.client("lambda").get_function(FunctionName="gen3d-t-upload")
    assert wired["LambdaFunctionArn"] == function["Configuration"]["FunctionArn"]
    assert wired["Events"] == ["s3:ObjectCreated:*"]
    assert wired["Filter"]["Key"]["FilterRules"] == [
        {"Name": "Prefix", "Value": "input/"}
    ] or wired["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": "input/"}]
    env = function["Configuration"]["Environment"]["Variables"]
    assert env == {
        "GEN3D_ENDPOINT_NAME": "t",
        "GEN3D_INPUT_PREFIX": "input/",
        "GEN3D_MAX_INPUT_BYTES": str(100 * 1024 * 1024),  # the async model's body limit
    }
    assert function["Configuration"]["CodeSha256"] == code_sha256(package_handler())
    assert (
        "s3.amazonaws.com"
        in boto3.client("lambda").get_policy(FunctionName="gen3d-t-upload")["Policy"]
    )


# ------------------------------------------------------------------------ batch


def test_batch_runs_on_the_deployments_model_and_is_idempotent(aws, capsys):
    make_endpoint("b", IO_BUCKET, asynchronous=False)
    args = [
        "batch",
        "--name",
        "b",
        "--input",
        "s3://in-bucket/photos/",
        "--output",
        "s3://out-bucket/meshes/",
        "--accept",
        "model/gltf-binary",
        "--wait",
        "--poll",
        "0.01",
    ]
    assert main(args) == 0
    assert "Completed" in capsys.readouterr().out
    assert main(args) == 0
    assert "nothing changed" in capsys.readouterr().out
    sm = boto3.client("sagemaker")
    (summary,) = sm.list_transform_jobs()["TransformJobSummaries"]
    job = sm.describe_transform_job(TransformJobName=summary["TransformJobName"])
    assert job["ModelName"] == "b-m"
    assert job["TransformResources"]["InstanceType"] == "ml.m5.large"  # the endpoint's
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://in-bucket/photos/"
    # left to the container's /execution-parameters
    assert not job.get("MaxConcurrentTransforms") and not job.get("BatchStrategy")
    tags = sm.list_tags(ResourceArn=job["TransformJobArn"])["Tags"]
    assert tags == [{"Key": "gen3d:deployment", "Value": "b"}]


def test_batch_without_a_deployment_says_so(aws, capsys):
    assert (
        main(["batch", "--name", "nope", "--input", "s3://a/in/", "--output", "s3://a/out/"]) == 1
    )
    assert "no model for deployment nope" in capsys.readouterr().err


def test_batch_dry_run_calls_nothing(aws, capsys):
    assert (
        main(
            [
                "batch",
                "--name",
                "b",
                "--input",
                "s3://a/in/",
                "--output",
                "s3://a/out/",
                "--dry-run",
            ]
        )
        == 0
    )
    assert "nothing was called" in capsys.readouterr().out
    assert boto3.client("sagemaker").list_transform_jobs()["TransformJobSummaries"] == []


@pytest.mark.slow  # a second or more on 2 cores: whole CLI runs through botocore
def test_gen3d_invoke_endpoint_writes_the_async_result(clients, aws, tmp_path, capsys):
    from gen3d_testing import make_endpoint, rgba_png

    make_endpoint("as", IO_BUCKET, asynchronous=True)
    queue_async_results(aws, {"data": "glb-from-async"})
    image = tmp_path / "photo.png"
    image.write_bytes(rgba_png())
    out = tmp_path / "photo.glb"
    assert main(["invoke", "--endpoint", "as", "--image", str(image), "--out", str(out)]) == 0
    assert out.read_bytes() == b"glb-from-async"
    (upload,) = clients["s3"].list_objects_v2(Bucket=IO_BUCKET)["Contents"]
    sent = json.loads(clients["s3"].get_object(Bucket=IO_BUCKET, Key=upload["Key"])["Body"].read())
    assert base64.b64decode(sent["image"]) == image.read_bytes()
    assert "queued as" in capsys.readouterr().err


def test_gen3d_invoke_endpoint_reports_a_missing_endpoint(aws, tmp_path, capsys):
    from gen3d_testing import rgba_png

    image = tmp_path / "photo.png"
    image.write_bytes(rgba_png())
    assert main(["invoke", "--endpoint", "absent", "--image", str(image)]) == 1
    err = capsys.readouterr().err
    assert "endpoint absent" in err and "Traceback" not in err
