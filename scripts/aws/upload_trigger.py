"""Package the upload-to-result Lambda and wire the bucket's ObjectCreated notification."""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from gen3d.aws.clients import tag_map
from gen3d.aws.endpoint_spec import ASYNC_MAX_BODY_MB
from gen3d.aws.plan import CREATED, UNCHANGED, UPDATED, ApiCall, Plan

HANDLER_FILE = Path(__file__).with_name("lambda_handler.py")
RUNTIME = "python3.12"


def function_name(deployment: str) -> str:
    return f"gen3d-{deployment}-upload"


def package_handler() -> bytes:
    """A byte-identical zip on every run (fixed timestamp), so an unchanged handler is
    recognised by its CodeSha256 and not re-uploaded."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo("lambda_handler.py", date_time=(2020, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        zf.writestr(info, HANDLER_FILE.read_bytes())
    return buf.getvalue()


def code_sha256(zip_bytes: bytes) -> str:
    return base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode()


def ensure_function(
    plan: Plan,
    lambda_client: Any,
    *,
    deployment: str,
    endpoint: str,
    role_arn: str,
    input_prefix: str,
) -> str:
    name = function_name(deployment)
    code = package_handler()
    env = {
        "Variables": {
            "GEN3D_ENDPOINT_NAME": endpoint,
            "GEN3D_INPUT_PREFIX": input_prefix,
            # the async model's body limit: a larger upload is skipped, not sent to fail
            "GEN3D_MAX_INPUT_BYTES": str(ASYNC_MAX_BODY_MB * 1024 * 1024),
        }
    }
    create = {
        "FunctionName": name,
        "Runtime": RUNTIME,
        "Role": role_arn,
        "Handler": "lambda_handler.handler",
        "Code": {"ZipFile": code},
        "Timeout": 30,
        "MemorySize": 128,
        "Environment": env,
        "Tags": tag_map(deployment),
        "Description": f"gen3d {deployment}: S3 upload -> InvokeEndpointAsync",
    }

    def apply() -> tuple[str, str]:
        try:
            config = lambda_client.get_function(FunctionName=name)["Configuration"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            config = lambda_client.create_function(**create)
            return CREATED, config["FunctionArn"]
        outcome = UNCHANGED
        if config.get("CodeSha256") != code_sha256(code):
            lambda_client.update_function_code(FunctionName=name, ZipFile=code)
            # Lambda refuses a configuration update while the code update is in
            # progress (ResourceConflictException; "Lambda function states" in the Lambda
            # developer guide): wait until LastUpdateStatus is Successful.
            lambda_client.get_waiter("function_updated").wait(FunctionName=name)
            outcome = UPDATED
        if (
            config.get("Environment", {}).get("Variables") != env["Variables"]
            or config.get("Role") != role_arn
        ):
            lambda_client.update_function_configuration(
                FunctionName=name, Role=role_arn, Environment=env
            )
            outcome = UPDATED
        return outcome, config["FunctionArn"]

    return plan.step(
        f"Lambda {name} (S3 {input_prefix}* -> InvokeEndpointAsync {endpoint})",
        apply,
        placeholder=f"<arn of Lambda {name}>",
        calls=[ApiCall("lambda", "CreateFunction", create)],
    )


def ensure_s3_permission(
    plan: Plan, lambda_client: Any, *, deployment: str, bucket: str, account: str
) -> None:
    name = function_name(deployment)
    statement_id = "gen3d-s3-invoke"

    def apply() -> tuple[str, None]:
        try:
            policy = lambda_client.get_policy(FunctionName=name)["Policy"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            policy = ""
        if statement_id in policy:
            return UNCHANGED, None
        lambda_client.add_permission(**request)
        return CREATED, None

    request = {
        "FunctionName": name,
        "StatementId": statement_id,
        "Action": "lambda:InvokeFunction",
        "Principal": "s3.amazonaws.com",
        "SourceArn": f"arn:aws:s3:::{bucket}",
        "SourceAccount": account,
    }
    plan.step(
        f"permission for s3://{bucket} to invoke {name}",
        apply,
        calls=[ApiCall("lambda", "AddPermission", request)],
    )


def ensure_bucket_notification(
    plan: Plan, s3: Any, *, deployment: str, bucket: str, function_arn: str, input_prefix: str
) -> None:
    wanted = {
        "Id": function_name(deployment),
        "LambdaFunctionArn": function_arn,
        "Events": ["s3:ObjectCreated:*"],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": input_prefix}]}},
    }

    def apply() -> tuple[str, None]:
        current = s3.get_bucket_notification_configuration(Bucket=bucket)
        current.pop("ResponseMetadata", None)
        lambdas = current.get("LambdaFunctionConfigurations", [])
        ours = [c for c in lambdas if c.get("Id") == wanted["Id"]]
        if ours and _same_notification(ours[0], wanted):
            return UNCHANGED, None
        # Keep every other notification on the bucket as it is.
        current["LambdaFunctionConfigurations"] = [
            c for c in lambdas if c.get("Id") != wanted["Id"]
        ] + [wanted]
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=current)
        return (UPDATED if ours else CREATED), None

    plan.step(
        f"bucket notification s3://{bucket}/{input_prefix}* -> Lambda",
        apply,
        calls=[
            ApiCall(
                "s3",
                "PutBucketNotificationConfiguration",
                {
                    "Bucket": bucket,
                    "NotificationConfiguration": {"LambdaFunctionConfigurations": [wanted]},
                },
            )
        ],
    )


def _same_notification(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def rules(c: dict[str, Any]) -> list[tuple[str, str]]:
        return sorted(
            (r["Name"].lower(), r["Value"])
            for r in c.get("Filter", {}).get("Key", {}).get("FilterRules", [])
        )

    return (
        a.get("LambdaFunctionArn") == b["LambdaFunctionArn"]
        and sorted(a.get("Events", [])) == sorted(b["Events"])
        and rules(a) == rules(b)
    )


def remove_bucket_notification(s3: Any, bucket: str, deployment: str) -> bool:
    current = s3.get_bucket_notification_configuration(Bucket=bucket)
    current.pop("ResponseMetadata", None)
    lambdas = current.get("LambdaFunctionConfigurations", [])
    kept = [c for c in lambdas if c.get("Id") != function_name(deployment)]
    if len(kept) == len(lambdas):
        return False
    current["LambdaFunctionConfigurations"] = kept
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=current)
    return True
