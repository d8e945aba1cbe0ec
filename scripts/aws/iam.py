"""Least-privilege roles: the SageMaker execution role and the upload-trigger Lambda's role.

Each policy names exactly the deployment's bucket prefixes, the ECR repositories, its log
groups and SNS topics; only calls that AWS cannot scope (ecr:GetAuthorizationToken,
cloudwatch:PutMetricData, which is limited by namespace instead) use "*". The execution
role reads only the request prefixes and the model's own key and writes only the result
prefixes (gen3d.aws.storage.MODEL_READS / MODEL_WRITES): a compromised container can
neither overwrite a model artifact kept in the bucket nor read what it was not sent.

Trust policies name the account and the resources that may assume the role
(aws:SourceAccount, aws:SourceArn), against a confused deputy: AWS's recommendation for
roles a service assumes ("Cross-service confused deputy prevention", IAM user guide;
Lambda: "Working with AWS managed policies in the execution role"). The `...IfExists`
operators: no SageMaker or Lambda page we found says the service sends both keys every
time it assumes its execution role (CreateModel assumes it to check it), and a plain
condition on an absent key denies, which would stop every deploy; with IfExists a key the
service sends must match, and one it does not send cannot lock the role.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from botocore.exceptions import ClientError

from gen3d.aws import storage
from gen3d.aws.alarms import alarm_name
from gen3d.aws.clients import tag_list
from gen3d.aws.inference_components import component_name, rollback_alarm_name
from gen3d.aws.plan import CREATED, UNCHANGED, UPDATED, ApiCall, Plan
from gen3d.aws.upload_trigger import function_name

POLICY_NAME = "gen3d-least-privilege"


def execution_role_name(deployment: str) -> str:
    return f"gen3d-{deployment}-sagemaker"


def trigger_role_name(deployment: str) -> str:
    return f"gen3d-{deployment}-upload-trigger"


def trust_policy(service: str, account: str, source_arn: str) -> dict[str, Any]:
    """`service` may assume the role only for `source_arn` (ArnLike) in `account`."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sts:AssumeRole",
                "Condition": {
                    "StringEqualsIfExists": {"aws:SourceAccount": account},
                    "ArnLikeIfExists": {"aws:SourceArn": source_arn},
                },
            }
        ],
    }


def execution_trust_policy(account: str, region: str) -> dict[str, Any]:
    """SageMaker, for the account's endpoints, inference components and transform jobs."""
    return trust_policy(
        "sagemaker.amazonaws.com", account, f"arn:aws:sagemaker:{region}:{account}:*"
    )


def trigger_trust_policy(deployment: str, account: str, region: str) -> dict[str, Any]:
    """Lambda, for the deployment's upload function only."""
    function = f"arn:aws:lambda:{region}:{account}:function:{function_name(deployment)}"
    return trust_policy("lambda.amazonaws.com", account, function)


def execution_role_policy(
    *,
    deployment: str,
    bucket: str,
    account: str,
    region: str,
    ecr_repositories: list[str],
    model_data_arns: list[str] | None = None,
    model_buckets: list[str] | None = None,
) -> dict[str, Any]:
    """SageMaker pulls the image with this role (CreateModel's ExecutionRoleArn), so
    `ecr_repositories` must hold every repository an image may be deployed from."""
    logs = f"arn:aws:logs:{region}:{account}:log-group:/aws/sagemaker"
    topics = [
        f"arn:aws:sns:{region}:{account}:gen3d-{deployment}-{kind}" for kind in ("success", "error")
    ]
    reads = [f"arn:aws:s3:::{bucket}/{prefix}*" for prefix in storage.MODEL_READS]
    writes = [f"arn:aws:s3:::{bucket}/{prefix}*" for prefix in storage.MODEL_WRITES]
    # batch transform lists its input prefix; SageMaker lists an uncompressed model prefix
    listed = [storage.BATCH_INPUT_PREFIX] + [
        arn.split("/", 1)[1] for arn in model_data_arns or [] if arn.endswith("*")
    ]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadModelAndInputs",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": sorted({*reads, *(model_data_arns or [])}),
            },
            {
                "Sid": "WriteResults",
                "Effect": "Allow",
                "Action": ["s3:PutObject"],
                "Resource": writes,
            },
            {
                "Sid": "ListForBatchTransform",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": sorted({f"arn:aws:s3:::{b}" for b in [bucket, *(model_buckets or [])]}),
                "Condition": {
                    "StringLike": {"s3:prefix": sorted({p.rstrip("*") + "*" for p in listed})}
                },
            },
            {
                "Sid": "PullImage",
                "Effect": "Allow",
                "Action": [
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchCheckLayerAvailability",
                ],
                "Resource": [
                    f"arn:aws:ecr:{region}:{account}:repository/{repository}"
                    for repository in sorted(set(ecr_repositories))
                ],
            },
            {
                "Sid": "EcrLogin",
                "Effect": "Allow",
                "Action": ["ecr:GetAuthorizationToken"],
                "Resource": ["*"],
            },
            {
                "Sid": "Logs",
                "Effect": "Allow",
                "Action": [
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "logs:DescribeLogStreams",
                ],
                # Inference components log to their own group, not the endpoint's.
                "Resource": [
                    f"{logs}/Endpoints/{deployment}:*",
                    f"{logs}/InferenceComponents/{component_name(deployment)}:*",
                    f"{logs}/TransformJobs:*",
                ],
            },
            {
                "Sid": "Metrics",
                "Effect": "Allow",
                "Action": ["cloudwatch:PutMetricData"],
                "Resource": ["*"],
                "Condition": {
                    "StringLike": {"cloudwatch:namespace": ["AWS/SageMaker*", "/aws/sagemaker/*"]}
                },
            },
            {
                # SageMaker reads the auto-rollback alarms with the execution role: the
                # blue/green DeploymentConfig's (realtime) and the inference component's
                # rolling update's (scale-to-zero). "Ensure that your IAM execution role
                # has permission to perform the cloudwatch:DescribeAlarms action on the
                # auto-rollback alarms you specify" (docs.aws.amazon.com/sagemaker/latest/
                # dg/deployment-guardrails-configuration.html).
                "Sid": "ReadRollbackAlarms",
                "Effect": "Allow",
                "Action": ["cloudwatch:DescribeAlarms"],
                "Resource": [
                    f"arn:aws:cloudwatch:{region}:{account}:alarm:{alarm}"
                    for alarm in rollback_alarm_names(deployment)
                ],
            },
            {
                "Sid": "AsyncNotifications",
                "Effect": "Allow",
                "Action": ["sns:Publish"],
                "Resource": topics,
            },
        ],
    }


def rollback_alarm_names(deployment: str) -> list[str]:
    """The alarms a deployment's DeploymentConfig or rolling update names for rollback
    (gen3d.aws.alarms.deployment_config, gen3d.aws.inference_components)."""
    return [alarm_name(deployment, "5xx-rate"), rollback_alarm_name(deployment)]


def trigger_role_policy(*, deployment: str, account: str, region: str) -> dict[str, Any]:
    """The Lambda invokes the endpoint with the object's location; SageMaker reads the
    object with the execution role, so this role reads nothing in S3."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "InvokeAsync",
                "Effect": "Allow",
                "Action": ["sagemaker:InvokeEndpointAsync"],
                # SageMaker lower-cases names in its ARNs (endpoint "MyEndpoint" has the ARN
                # ...:endpoint/myendpoint; docs: understanding-sagemaker-entries.html), and
                # IAM compares ARNs case-sensitively.
                "Resource": [f"arn:aws:sagemaker:{region}:{account}:endpoint/{deployment.lower()}"],
            },
            {
                "Sid": "Logs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [
                    f"arn:aws:logs:{region}:{account}:log-group:/aws/lambda/"
                    f"{function_name(deployment)}:*"
                ],
            },
        ],
    }


def _as_dict(document: Any) -> Any:
    # IAM returns URL-encoded JSON on the wire; boto3 usually decodes it to a dict.
    return json.loads(unquote(document)) if isinstance(document, str) else document


def ensure_role(
    plan: Plan,
    iam: Any,
    role_name: str,
    trust: dict[str, Any],
    policy: dict[str, Any],
    deployment: str,
) -> str:
    service = trust["Statement"][0]["Principal"]["Service"]
    create = {
        "RoleName": role_name,
        "AssumeRolePolicyDocument": json.dumps(trust),
        "Description": f"gen3d deployment {deployment}",
        "Tags": tag_list(deployment),
    }
    update_trust = {"RoleName": role_name, "PolicyDocument": json.dumps(trust)}
    put_policy = {
        "RoleName": role_name,
        "PolicyName": POLICY_NAME,
        "PolicyDocument": json.dumps(policy),
    }

    def apply() -> tuple[str, str]:
        outcome = UNCHANGED
        try:
            role = iam.get_role(RoleName=role_name)["Role"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NoSuchEntity":
                raise
            role = iam.create_role(**create)["Role"]
            outcome = CREATED
        if outcome != CREATED and _as_dict(role.get("AssumeRolePolicyDocument")) != trust:
            # a role made before its trust policy named the source account and resource
            iam.update_assume_role_policy(**update_trust)
            outcome = UPDATED
        try:
            current = _as_dict(
                iam.get_role_policy(RoleName=role_name, PolicyName=POLICY_NAME)["PolicyDocument"]
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NoSuchEntity":
                raise
            current = None
        if current != policy:
            iam.put_role_policy(**put_policy)
            outcome = outcome if outcome == CREATED else UPDATED
        return outcome, role["Arn"]

    return plan.step(
        f"IAM role {role_name} (trusts {service}) + inline {POLICY_NAME}",
        apply,
        request={"AssumeRolePolicyDocument": trust, "PolicyDocument": policy},
        placeholder=f"<arn of role {role_name}>",
        calls=[ApiCall("iam", "CreateRole", create), ApiCall("iam", "PutRolePolicy", put_policy)],
    )


def delete_role(iam: Any, role_name: str) -> None:
    for page in iam.get_paginator("list_role_policies").paginate(RoleName=role_name):
        for policy in page["PolicyNames"]:
            iam.delete_role_policy(RoleName=role_name, PolicyName=policy)
    for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=role_name):
        for policy in page["AttachedPolicies"]:
            iam.detach_role_policy(RoleName=role_name, PolicyArn=policy["PolicyArn"])
    iam.delete_role(RoleName=role_name)
