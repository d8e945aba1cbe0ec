"""Push the serving image to Amazon ECR.

The repository is created when missing with scan-on-push and IMMUTABLE tags (an endpoint's
image reference must never change under it), and brought to those settings when it
exists. Login uses `get_authorization_token`; the password goes to `docker login` on
stdin, never on a command line. A tag already in the repository is not pushed again
(immutable tags would refuse it), so running the push twice is safe.

Every boto3 call takes the ECR client as an argument; the docker CLI is reached only
through `DockerCLI`, the one seam the tests cannot cross without a Docker engine.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from gen3d.aws.errors import AwsCommandError

# ECR's own pattern for repository names (CreateRepository API reference).
REPOSITORY_NAME = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")
# Docker's tag grammar.
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")

Progress = Callable[[str], None]


class PushError(AwsCommandError):
    """The push failed outside AWS's API: bad image reference, docker missing or failing."""


@dataclass(frozen=True)
class Repository:
    name: str
    uri: str  # <account>.dkr.ecr.<region>.amazonaws.com/<name>
    created: bool
    changed_settings: tuple[str, ...] = ()

    @property
    def registry(self) -> str:
        return self.uri.split("/", 1)[0]


def split_image(image: str) -> tuple[str, str]:
    """'name:tag' -> (name, tag); the tag is required (an ECR push names what it pushes)."""
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag or not name:
        raise PushError(f"image {image!r} has no tag: give it as NAME:TAG (e.g. gen3d:1a2b3c4)")
    if not TAG.match(tag):
        raise PushError(f"image tag {tag!r} is not a valid docker tag")
    if tag == "latest":
        raise PushError(
            "refusing to push 'latest': ECR tags are immutable here, so it could never be "
            "updated; push a version tag (make push uses the git sha)"
        )
    return name, tag


def check_repository_name(name: str) -> None:
    if not (2 <= len(name) <= 256) or not REPOSITORY_NAME.match(name):
        raise PushError(
            f"repository name {name!r} is not valid for ECR: lowercase letters, digits and "
            "'.', '_', '-', '/' separators, 2-256 characters"
        )


def ensure_repository(ecr: Any, name: str) -> Repository:
    """Create `name` (scanOnPush, IMMUTABLE) if missing; converge an existing one's settings."""
    check_repository_name(name)
    try:
        repo = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "RepositoryNotFoundException":
            raise AwsCommandError(f"cannot read ECR repository {name}: {exc}") from exc
        repo = ecr.create_repository(
            repositoryName=name,
            imageTagMutability="IMMUTABLE",
            imageScanningConfiguration={"scanOnPush": True},
        )["repository"]
        return Repository(name=name, uri=repo["repositoryUri"], created=True)

    changed = []
    if repo.get("imageTagMutability") != "IMMUTABLE":
        ecr.put_image_tag_mutability(repositoryName=name, imageTagMutability="IMMUTABLE")
        changed.append("imageTagMutability=IMMUTABLE")
    if not repo.get("imageScanningConfiguration", {}).get("scanOnPush"):
        ecr.put_image_scanning_configuration(
            repositoryName=name, imageScanningConfiguration={"scanOnPush": True}
        )
        changed.append("scanOnPush=true")
    return Repository(
        name=name, uri=repo["repositoryUri"], created=False, changed_settings=tuple(changed)
    )


def tag_exists(ecr: Any, repository: str, tag: str) -> bool:
    try:
        ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ImageNotFoundException":
            return False
        raise AwsCommandError(f"cannot list images of {repository}: {exc}") from exc
    return True


@dataclass(frozen=True)
class Login:
    username: str
    password: str
    registry: str  # host name, no scheme


def registry_login(ecr: Any) -> Login:
    """Decode `get_authorization_token` ('AWS:<password>', base64) for `docker login`."""
    data = ecr.get_authorization_token()["authorizationData"][0]
    user, sep, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    if not sep or not password:
        raise AwsCommandError("ECR returned an authorization token without a password")
    registry = re.sub(r"^https?://", "", data["proxyEndpoint"]).rstrip("/")
    return Login(username=user, password=password, registry=registry)


class DockerCLI:
    """The docker command line: the only part of a push that needs a Docker engine."""

    def __init__(self, executable: str = "docker") -> None:
        self.executable = executable

    def run(self, args: Sequence[str], stdin: str | None = None) -> None:
        path = shutil.which(self.executable)
        if path is None:
            raise PushError(
                f"'{self.executable}' not found on PATH: pushing needs the docker CLI and engine"
            )
        result = subprocess.run(
            [path, *args], input=stdin, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            reason = detail[-1] if detail else f"exit code {result.returncode}"
            raise PushError(f"docker {args[0]} failed: {reason}")

    def login(self, login: Login) -> None:
        self.run(
            ["login", "--username", login.username, "--password-stdin", login.registry],
            stdin=login.password,
        )

    def tag(self, source: str, target: str) -> None:
        self.run(["tag", source, target])

    def push(self, target: str) -> None:
        self.run(["push", target])


@dataclass(frozen=True)
class PushResult:
    uri: str  # <registry>/<repository>:<tag>
    repository: Repository
    pushed: bool  # False when the tag was in ECR already


def push_image(
    ecr: Any,
    docker: DockerCLI,
    local_image: str,
    repository: str | None = None,
    progress: Progress = print,
) -> PushResult:
    """Push `local_image` (NAME:TAG) to ECR repository `repository` (default NAME)."""
    name, tag = split_image(local_image)
    repo_name = repository or name.rsplit("/", 1)[-1]
    repo = ensure_repository(ecr, repo_name)
    if repo.created:
        progress(f"created ECR repository {repo.name} (scan on push, immutable tags)")
    for setting in repo.changed_settings:
        progress(f"set {setting} on existing repository {repo.name}")
    uri = f"{repo.uri}:{tag}"
    if tag_exists(ecr, repo.name, tag):
        progress(f"{uri} is in ECR already (tags are immutable): nothing to push")
        return PushResult(uri=uri, repository=repo, pushed=False)
    login = registry_login(ecr)
    progress(f"docker login {login.registry}")
    docker.login(login)
    docker.tag(local_image, uri)
    progress(f"docker push {uri} (this can take minutes)")
    docker.push(uri)
    return PushResult(uri=uri, repository=repo, pushed=True)


def push_plan(local_image: str, repository: str | None, region: str) -> list[str]:
    """What `push_image` would do, without calling anything (for --dry-run)."""
    name, tag = split_image(local_image)
    repo_name = repository or name.rsplit("/", 1)[-1]
    check_repository_name(repo_name)
    registry = f"<account>.dkr.ecr.{region}.amazonaws.com"
    return [
        f"ecr:DescribeRepositories {repo_name}; if missing ecr:CreateRepository {repo_name} "
        "(imageTagMutability=IMMUTABLE, scanOnPush=true), else set those two if they differ",
        f"ecr:DescribeImages {repo_name}:{tag}; stop here if the tag is already pushed",
        f"ecr:GetAuthorizationToken; docker login --password-stdin {registry}",
        f"docker tag {local_image} {registry}/{repo_name}:{tag}",
        f"docker push {registry}/{repo_name}:{tag}",
    ]
