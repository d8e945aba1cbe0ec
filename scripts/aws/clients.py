"""boto3 clients from the normal configuration chain, deployment tags, the service model.

Clients come from `boto3.session.Session(region_name=...)`, so credentials, profiles and
`AWS_ENDPOINT_URL` (the tests' moto server) are honoured exactly as boto3 itself does.
Every session in a process shares one botocore data loader: a fresh session otherwise
parses the service models' JSON again (SageMaker's alone is megabytes), which made each
command run in-process (tests, `gen3d deploy` then `status`) pay it anew.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
import botocore.loaders
import botocore.session

from gen3d.aws.errors import AwsCommandError

TAG_KEY = "gen3d:deployment"


@cache
def _data_loader() -> botocore.loaders.Loader:
    return botocore.loaders.create_loader()


def _botocore_session() -> botocore.session.Session:
    core = botocore.session.Session()
    core.register_component("data_loader", _data_loader())
    return core


def boto3_session(region: str | None = None) -> boto3.session.Session:
    """A boto3 session (the normal credential and configuration chain) whose service
    models come from this process's shared loader."""
    return boto3.session.Session(botocore_session=_botocore_session(), region_name=region)


class AwsClients:
    """Lazily built boto3 clients for one region; attribute access names the service
    (`clients.sagemaker`, `clients.sagemaker_runtime`, `clients.application_autoscaling`)."""

    def __init__(self, region: str | None = None) -> None:
        self.session = boto3_session(region)
        self._clients: dict[str, Any] = {}

    @property
    def region(self) -> str:
        region = self.session.region_name
        if not region:
            raise AwsCommandError("no AWS region: pass --region or set AWS_DEFAULT_REGION")
        return region

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service, region_name=self.region)
        return self._clients[service]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.client(name.replace("_", "-"))

    def account_id(self) -> str:
        return self.client("sts").get_caller_identity()["Account"]


def tag_list(deployment: str) -> list[dict[str, str]]:
    """Tags in the Key/Value list form (SageMaker, CloudWatch, SNS, IAM, S3, budgets)."""
    return [{"Key": TAG_KEY, "Value": deployment}]


def tag_map(deployment: str) -> dict[str, str]:
    """Tags in the mapping form (Lambda, CloudWatch Logs, Application Auto Scaling)."""
    return {TAG_KEY: deployment}


def has_tag(tags: list[dict[str, str]] | dict[str, str], deployment: str) -> bool:
    if isinstance(tags, dict):
        return tags.get(TAG_KEY) == deployment
    return any(t.get("Key") == TAG_KEY and t.get("Value") == deployment for t in tags)


@cache
def _service_model(service: str) -> Any:
    return _botocore_session().get_service_model(service)


def model_enum(service: str, shape: str) -> list[str]:
    """The values botocore's model of `service` allows for the string shape `shape`."""
    return list(_service_model(service).shape_for(shape).enum)
