"""`gen3d push` against the local moto server (a real ECR API emulator on 127.0.0.1).

The docker CLI needs a Docker engine, which these machines lack: `docker push` itself is
not exercised. The tests go up to that seam (`DockerCLI`): what ECR is asked, what docker
would be told (password on stdin), and the real CLI's failure when docker cannot run.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence

import boto3
import pytest

from gen3d.aws import ecr
from gen3d.cli.main import main as gen3d


class RecordingDocker(ecr.DockerCLI):
    """Stands in for the docker binary only: records what would be run."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[list[str], str | None]] = []

    def run(self, args: Sequence[str], stdin: str | None = None) -> None:
        self.calls.append((list(args), stdin))


@pytest.fixture
def ecr_client(aws: str):
    return boto3.session.Session(region_name="us-east-1").client("ecr")


def describe(ecr_client, name: str) -> dict:
    return ecr_client.describe_repositories(repositoryNames=[name])["repositories"][0]


def test_ensure_repository_creates_scan_on_push_immutable_once(ecr_client) -> None:
    repo = ecr.ensure_repository(ecr_client, "gen3d-cpu")
    assert repo.created
    stored = describe(ecr_client, "gen3d-cpu")
    assert stored["imageTagMutability"] == "IMMUTABLE"
    assert stored["imageScanningConfiguration"]["scanOnPush"] is True
    assert repo.uri == stored["repositoryUri"]
    again = ecr.ensure_repository(ecr_client, "gen3d-cpu")
    assert not again.created and again.changed_settings == ()
    assert len(ecr_client.describe_repositories()["repositories"]) == 1


def test_existing_repository_is_brought_to_immutable_and_scan_on_push(ecr_client) -> None:
    ecr_client.create_repository(repositoryName="legacy", imageTagMutability="MUTABLE")
    repo = ecr.ensure_repository(ecr_client, "legacy")
    assert not repo.created
    assert set(repo.changed_settings) == {"imageTagMutability=IMMUTABLE", "scanOnPush=true"}
    stored = describe(ecr_client, "legacy")
    assert stored["imageTagMutability"] == "IMMUTABLE"
    assert stored["imageScanningConfiguration"]["scanOnPush"] is True


@pytest.mark.parametrize("bad", ["Gen3D", "a", "gen3d--x/", "-gen3d", "gen3d:tag"])
def test_invalid_repository_name_is_refused_before_any_call(ecr_client, bad: str) -> None:
    with pytest.raises(ecr.PushError, match="not valid for ECR"):
        ecr.ensure_repository(ecr_client, bad)
    assert ecr_client.describe_repositories()["repositories"] == []


def test_registry_login_decodes_the_authorization_token(ecr_client) -> None:
    token = ecr_client.get_authorization_token()["authorizationData"][0]
    login = ecr.registry_login(ecr_client)
    assert login.username == "AWS"
    assert (
        f"{login.username}:{login.password}"
        == base64.b64decode(token["authorizationToken"]).decode()
    )
    assert "://" not in login.registry and login.registry in token["proxyEndpoint"]


def test_push_image_logs_in_tags_and_pushes_with_password_on_stdin(ecr_client) -> None:
    docker = RecordingDocker()
    lines: list[str] = []
    result = ecr.push_image(ecr_client, docker, "gen3d-cpu:1a2b3c4", progress=lines.append)
    repo = describe(ecr_client, "gen3d-cpu")
    assert result.pushed and result.uri == f"{repo['repositoryUri']}:1a2b3c4"
    login = ecr.registry_login(ecr_client)
    (login_args, stdin), tag_call, push_call = docker.calls
    assert login_args == ["login", "--username", "AWS", "--password-stdin", login.registry]
    assert stdin == login.password and all(login.password not in a for a in login_args)
    assert tag_call == (["tag", "gen3d-cpu:1a2b3c4", result.uri], None)
    assert push_call == (["push", result.uri], None)
    assert any("created ECR repository gen3d-cpu" in line for line in lines)


def test_a_tag_already_in_ecr_is_not_pushed_again(ecr_client) -> None:
    ecr.ensure_repository(ecr_client, "gen3d-gpu")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 2,
            "digest": "sha256:" + "0" * 64,
        },
        "layers": [],
    }
    ecr_client.put_image(
        repositoryName="gen3d-gpu", imageManifest=json.dumps(manifest), imageTag="abc123"
    )
    docker = RecordingDocker()
    result = ecr.push_image(ecr_client, docker, "gen3d-gpu:abc123", progress=lambda _: None)
    assert not result.pushed and docker.calls == []
    assert result.uri.endswith("/gen3d-gpu:abc123")


def test_repository_option_overrides_the_image_name(ecr_client) -> None:
    docker = RecordingDocker()
    result = ecr.push_image(
        ecr_client, docker, "localhost/gen3d:cpu-test", "team/gen3d-cpu", progress=lambda _: None
    )
    assert result.uri.endswith("/team/gen3d-cpu:cpu-test")


@pytest.mark.parametrize(
    "image", ["gen3d", "gen3d:", "registry:5000/gen3d", "gen3d:bad tag", "gen3d:latest"]
)
def test_image_without_a_valid_tag_is_refused(image: str) -> None:
    with pytest.raises(ecr.PushError):
        ecr.split_image(image)


def test_real_docker_cli_failure_is_one_clear_error(ecr_client) -> None:
    """The real DockerCLI: missing binary, or (docker present, no engine/no such image)."""
    with pytest.raises(ecr.PushError, match="'gen3d-no-such-docker' not found on PATH"):
        ecr.DockerCLI("gen3d-no-such-docker").run(["version"])
    with pytest.raises(ecr.PushError, match=r"docker|not found on PATH"):
        ecr.push_image(
            ecr_client,
            ecr.DockerCLI(),
            "gen3d-image-that-does-not-exist:zzz",
            progress=lambda _: None,
        )
    # the repository was made before docker was needed; a rerun picks up from there
    assert describe(ecr_client, "gen3d-image-that-does-not-exist")["imageTagMutability"] == (
        "IMMUTABLE"
    )


def test_cli_dry_run_prints_the_plan_and_calls_nothing(
    ecr_client, capsys: pytest.CaptureFixture[str]
) -> None:
    assert gen3d(["push", "gen3d-cpu:1a2b3c4", "--dry-run", "--region", "eu-west-1"]) == 0
    out = capsys.readouterr().out
    assert "CreateRepository gen3d-cpu" in out and "IMMUTABLE" in out
    assert "<account>.dkr.ecr.eu-west-1.amazonaws.com/gen3d-cpu:1a2b3c4" in out
    assert ecr_client.describe_repositories()["repositories"] == []


def test_cli_errors_are_one_line_without_traceback(
    ecr_client, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    assert gen3d(["push", "gen3d-cpu"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gen3d push: image 'gen3d-cpu' has no tag") and "Traceback" not in err
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker binary at all
    assert gen3d(["push", "gen3d-cpu:1a2b3c4"]) == 1
    err = capsys.readouterr().err
    assert "'docker' not found on PATH" in err and "Traceback" not in err
    assert describe(ecr_client, "gen3d-cpu")["imageScanningConfiguration"]["scanOnPush"]


def test_cli_help_explains() -> None:
    with pytest.raises(SystemExit) as exit_info:
        gen3d(["push", "--help"])
    assert exit_info.value.code == 0
