"""The deployment's S3 bucket: private, encrypted, TLS-only, with a storage lifecycle."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from gen3d.aws.clients import has_tag, tag_list
from gen3d.aws.errors import AwsCommandError
from gen3d.aws.plan import CREATED, UNCHANGED, UPDATED, ApiCall, Plan

# Object prefixes inside the bucket. Uploads under INPUT_PREFIX trigger the Lambda;
# the CLI's own async uploads go elsewhere so they are not invoked twice.
INPUT_PREFIX = "input/"
CLI_INPUT_PREFIX = "async/input/"
OUTPUT_PREFIX = "async/output/"
FAILURE_PREFIX = "async/failure/"
# `gen3d batch --input/--output` under these (the execution role reads and writes no other)
BATCH_INPUT_PREFIX = "batch/in/"
BATCH_OUTPUT_PREFIX = "batch/out/"
# What the model (the execution role) may read and write in the bucket: requests in,
# results out. A model artifact kept in the bucket is granted by its own key (setup
# --model-data), never by a wildcard a compromised container could overwrite.
MODEL_READS = (INPUT_PREFIX, CLI_INPUT_PREFIX, BATCH_INPUT_PREFIX)
MODEL_WRITES = (OUTPUT_PREFIX, FAILURE_PREFIX, BATCH_OUTPUT_PREFIX)
# What the lifecycle may archive and expire: request data only. A model artifact in the
# bucket must stay readable, or every scale-out from zero fails (SageMaker cannot read
# an object in GLACIER until it is restored).
ARCHIVED_PREFIXES = (INPUT_PREFIX, "async/")

PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
ENCRYPTION = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}


@dataclass(frozen=True)
class Lifecycle:
    infrequent_access_days: int = 30
    glacier_days: int = 90
    expire_days: int = 365

    def __post_init__(self) -> None:
        # S3 needs >= 30 days before STANDARD_IA and each later step to come after.
        if self.infrequent_access_days < 30:
            raise AwsCommandError("--ia-days must be at least 30 (an S3 rule for STANDARD_IA)")
        if not self.infrequent_access_days < self.glacier_days < self.expire_days:
            raise AwsCommandError(
                "lifecycle days must increase: --ia-days < --glacier-days < --expire-days"
            )

    def rules(self) -> dict[str, Any]:
        """One rule per request-data prefix (ARCHIVED_PREFIXES); nothing else is touched."""
        return {
            "Rules": [
                {
                    "ID": f"gen3d-archive-{prefix.strip('/').replace('/', '-')}",
                    "Filter": {"Prefix": prefix},
                    "Status": "Enabled",
                    "Transitions": [
                        {"Days": self.infrequent_access_days, "StorageClass": "STANDARD_IA"},
                        {"Days": self.glacier_days, "StorageClass": "GLACIER"},
                    ],
                    "Expiration": {"Days": self.expire_days},
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
                }
                for prefix in ARCHIVED_PREFIXES
            ]
        }


def default_bucket_name(deployment: str, account: str, region: str) -> str:
    # S3: 3-63 characters, ending in a letter or digit (bucket naming rules,
    # docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html); a cut at 63
    # can leave a trailing hyphen.
    return f"gen3d-{deployment}-{account}-{region}".lower()[:63].rstrip("-")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """'s3://bucket/key' -> ('bucket', 'key'); a clear error otherwise."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket:
        raise AwsCommandError(f"not an S3 URI: {uri!r} (expected s3://bucket/key)")
    return bucket, key


def tls_only_policy(bucket: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _read(call: Any, missing: tuple[str, ...], **kwargs: Any) -> dict[str, Any] | None:
    try:
        return call(**kwargs)
    except ClientError as exc:
        if _code(exc) in missing:
            return None
        raise


def ensure_bucket(
    plan: Plan, s3: Any, bucket: str, deployment: str, region: str, lifecycle: Lifecycle
) -> str:
    """Create (or bring back in line) the bucket and each security setting; one plan step
    per setting so the dry run shows every request."""

    def create() -> tuple[str, str]:
        if _read(s3.head_bucket, ("404", "NoSuchBucket", "NotFound"), Bucket=bucket) is not None:
            tags = _read(s3.get_bucket_tagging, ("NoSuchTagSet",), Bucket=bucket) or {}
            if not has_tag(tags.get("TagSet", []), deployment):
                raise AwsCommandError(
                    f"bucket {bucket} exists but is not tagged for deployment {deployment}; "
                    "pass --bucket with a bucket of this deployment or a new name"
                )
            return UNCHANGED, bucket
        s3.create_bucket(**create_request)
        s3.put_bucket_tagging(**tagging_request)
        return CREATED, bucket

    create_request: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":  # us-east-1 rejects an explicit LocationConstraint
        create_request["CreateBucketConfiguration"] = {"LocationConstraint": region}
    tagging_request = {"Bucket": bucket, "Tagging": {"TagSet": tag_list(deployment)}}
    plan.step(
        f"S3 bucket {bucket}",
        create,
        placeholder=bucket,
        calls=[
            ApiCall("s3", "CreateBucket", create_request),
            ApiCall("s3", "PutBucketTagging", tagging_request),
        ],
    )

    def setting(
        summary: str,
        read: Any,
        missing: tuple[str, ...],
        extract: Any,
        wanted: Any,
        write: Any,
        operation: str,
        params: dict[str, Any],
    ) -> None:
        def apply() -> tuple[str, None]:
            current = _read(read, missing, Bucket=bucket)
            if current is not None and extract(current) == wanted:
                return UNCHANGED, None
            write(**params)
            return (CREATED if current is None else UPDATED), None

        plan.step(f"{summary} on {bucket}", apply, calls=[ApiCall("s3", operation, params)])

    setting(
        "public access block",
        s3.get_public_access_block,
        ("NoSuchPublicAccessBlockConfiguration",),
        lambda r: r["PublicAccessBlockConfiguration"],
        PUBLIC_ACCESS_BLOCK,
        s3.put_public_access_block,
        "PutPublicAccessBlock",
        {"Bucket": bucket, "PublicAccessBlockConfiguration": PUBLIC_ACCESS_BLOCK},
    )
    setting(
        "default encryption",
        s3.get_bucket_encryption,
        ("ServerSideEncryptionConfigurationNotFoundError",),
        lambda r: _encryption_algorithms(r["ServerSideEncryptionConfiguration"]),
        _encryption_algorithms(ENCRYPTION),
        s3.put_bucket_encryption,
        "PutBucketEncryption",
        {"Bucket": bucket, "ServerSideEncryptionConfiguration": ENCRYPTION},
    )
    policy = tls_only_policy(bucket)
    setting(
        "TLS-only bucket policy",
        s3.get_bucket_policy,
        ("NoSuchBucketPolicy",),
        lambda r: json.loads(r["Policy"]),
        policy,
        s3.put_bucket_policy,
        "PutBucketPolicy",
        {"Bucket": bucket, "Policy": json.dumps(policy)},
    )
    rules = lifecycle.rules()
    setting(
        f"lifecycle (IA/Glacier/expiry of {', '.join(ARCHIVED_PREFIXES)} only)",
        s3.get_bucket_lifecycle_configuration,
        ("NoSuchLifecycleConfiguration",),
        lambda r: _lifecycle_view(r["Rules"]),
        _lifecycle_view(rules["Rules"]),
        s3.put_bucket_lifecycle_configuration,
        "PutBucketLifecycleConfiguration",
        {"Bucket": bucket, "LifecycleConfiguration": rules},
    )
    return bucket


def _encryption_algorithms(config: dict[str, Any]) -> list[str]:
    return [r["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in config["Rules"]]


def _lifecycle_view(rules: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The parts of the rules we set, in a form that compares equal after a round trip."""
    return sorted(
        (
            r.get("ID"),
            r.get("Filter", {}).get("Prefix"),
            r.get("Status"),
            tuple((t.get("Days"), t.get("StorageClass")) for t in r.get("Transitions", [])),
            r.get("Expiration", {}).get("Days"),
        )
        for r in rules
    )


def empty_and_delete_bucket(s3: Any, bucket: str) -> int:
    """Delete every object (and version) then the bucket; returns how many objects went."""
    removed = 0
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket):
        batch = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        if batch:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            removed += len(batch)
    s3.delete_bucket(Bucket=bucket)
    return removed
