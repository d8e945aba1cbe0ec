"""The README's "Deploy SAM 3D in N commands", command by command, so it cannot drift:
prepare against the loopback stand-in hub, the AWS commands as dry runs against the
moto server's environment, make as `make -n`, invoke against moto's async endpoint."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import requests
from gen3d_testing import make_endpoint
from hf_hub_standin import GRANTED, Hub, Repo, serve

from gen3d.cli.main import main
from gen3d.serve.artifact.manifest import verify

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
ACCOUNT = "123456789012"
REGION = "us-east-1"
BUCKET = f"gen3d-sam3d-{ACCOUNT}-{REGION}"  # gen3d setup's default name
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/gen3d-sam3d-sagemaker"
IMAGE_URI = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/gen3d-sam3d:0a1b2c3d4e5f"
CHANGES_AWS = {"setup", "package", "deploy", "teardown"}


def readme_commands() -> tuple[int, list[list[str]]]:
    """N from the heading and the commands of the block under it."""
    text = README.read_text()
    heading = re.search(r"^## Deploy SAM 3D in (\d+) commands$", text, re.M)
    assert heading, "README lost its deploy section"
    block = re.search(r"```bash\n(.*?)```", text[heading.end() :], re.S)
    assert block
    commands = [shlex.split(line) for line in block.group(1).splitlines() if line.strip()]
    return int(heading.group(1)), commands


def test_the_section_has_the_commands_its_title_says() -> None:
    n, commands = readme_commands()
    assert len(commands) == n
    assert [c[:2] for c in commands] == [
        ["gen3d", "setup"],
        ["gen3d", "sam3d"],
        ["gen3d", "package"],
        ["make", "build"],
        ["gen3d", "deploy"],
        ["gen3d", "invoke"],
        ["gen3d", "teardown"],
    ]


def fill(args: list[str], out: Path) -> list[str]:
    """The placeholders the README says earlier commands print, and out/ under tmp."""
    text = shlex.join(args)
    for placeholder, value in (("BUCKET", BUCKET), ("ROLE_ARN", ROLE_ARN)):
        text = text.replace(placeholder, value)
    text = text.replace("IMAGE_URI", IMAGE_URI).replace("out/", f"{out}/")
    return shlex.split(text)


@pytest.fixture
def stand_in_hub():
    hub = Hub(
        repos={
            "facebook/sam-3d-objects": Repo(
                gated=True,
                files={
                    "checkpoints/pipeline.yaml": b"device: cpu\nss_inference_steps: 25\n",
                    "checkpoints/ss_generator.ckpt": b"w" * 2048,
                },
            ),
            "Ruicheng/moge-vitl": Repo(files={"model.pt": b"moge"}),
        },
        plain={"dinov2.zip": _zipball(), "w.pth": b"dino"},
    )
    server, thread = serve(hub)
    yield hub
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _zipball() -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("facebookresearch-dinov2-abc/hubconf.py", "dependencies = ['torch']\n")
    return buffer.getvalue()


@pytest.mark.slow
def test_the_readme_deploy_section_runs_command_by_command(
    aws: str, stand_in_hub: Hub, tmp_path: Path, capsys
) -> None:
    _, commands = readme_commands()
    out = tmp_path / "out"
    for raw in commands:
        args = fill(raw, out)
        if args[0] == "make":  # docker build + push: what make would run, nothing run
            dry = subprocess.run(
                ["make", "-n", *args[1:]], cwd=ROOT, capture_output=True, text=True, timeout=60
            )
            assert dry.returncode == 0, dry.stderr
            assert "platform build-args sam3d" in dry.stdout and "docker build" in dry.stdout
            assert re.search(r"gen3d push gen3d-sam3d:\S+ --region us-east-1", dry.stdout)
            image = "gen3d-sam3d:0a1b2c3d4e5f"
            assert main(["push", image, "--region", REGION, "--dry-run"]) == 0
            assert "gen3d-sam3d" in capsys.readouterr().out
            continue
        assert args[0] == "gen3d"
        command = args[1]
        if command == "sam3d":  # the real download, from the stand-in hub
            env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
            env.update(HF_ENDPOINT=stand_in_hub.url, HF_HOME=str(tmp_path / "hf"))
            env.update(HF_TOKEN=GRANTED, HF_HUB_DISABLE_XET="1")
            extra = ["--dinov2-code-url", f"{stand_in_hub.url}/files/dinov2.zip"]
            extra += ["--dinov2-weights-url", f"{stand_in_hub.url}/files/w.pth"]
            done = subprocess.run(
                [sys.executable, "-m", "gen3d.cli", *args[1:], *extra],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            verify(out / "sam3d", "sam3d", strict=True)
            # the next command it prints is the README's next one
            assert shlex.join(fill(commands[2], out)[:6]) in done.stdout
            continue
        if command == "invoke":  # moto's async endpoint answers from its result queue
            make_endpoint("sam3d", BUCKET, asynchronous=True)
            boto3.client("s3").create_bucket(Bucket=BUCKET)
            requests.post(
                f"{aws}/moto-api/static/sagemaker/async-endpoint-results",
                json={"results": [{"data": "glb-from-sam3d"}]},
                timeout=10,
            ).raise_for_status()
            assert main(args[1:]) == 0
            assert (out / "coffee.glb").read_bytes() == b"glb-from-sam3d"
            continue
        assert command in CHANGES_AWS
        code = main([*args[1:], "--dry-run"])
        printed = capsys.readouterr()
        assert code == 0, printed.err
        # a dry run calls nothing: the emulator is as before
        if command in ("setup", "package"):
            assert boto3.client("s3").list_buckets()["Buckets"] == []
        if command == "deploy":
            assert boto3.client("sagemaker").list_models()["Models"] == []
        if command == "teardown":
            assert boto3.client("sagemaker").describe_endpoint(EndpointName="sam3d")
        if command == "deploy":  # the backend comes from the sam3d image
            assert "backend sam3d" in printed.out.splitlines()[0]
            assert "GEN3D_STAGE_OFFLOAD" in printed.out  # 24 GB: offload set for the user
        if command == "package":
            assert "sam3d package" in printed.out
