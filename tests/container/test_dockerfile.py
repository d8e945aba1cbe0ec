"""The Dockerfile's contract, read by a Dockerfile parser (dockerfile-parse), not by grep."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from gen3d.aws import platform

ROOT = Path(__file__).resolve().parents[2]
BUILD_TOOLS = re.compile(
    r"\b(build-essential|gcc|g\+\+|clang|make|cmake|ninja-build|git|"
    r"python3(\.\d+)?-dev|[\w.+-]+-dev|cuda-nvcc[\w.-]*|cuda-toolkit[\w.-]*)\b"
)


@pytest.fixture(scope="module")
def parser() -> DockerfileParser:
    dfp = DockerfileParser(path=str(ROOT / "Dockerfile"))
    return dfp


def stages(parser: DockerfileParser) -> list[list[dict]]:
    """Instructions grouped by build stage (the global ARGs before the first FROM dropped)."""
    out: list[list[dict]] = []
    for ins in parser.structure:
        if ins["instruction"] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def final_stage(parser: DockerfileParser) -> list[dict]:
    return stages(parser)[-1]


def of(stage: list[dict], instruction: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == instruction]


def env_of(stage: list[dict]) -> dict[str, str]:
    env: dict[str, str] = {}
    for value in of(stage, "ENV"):
        for token in shlex.split(value):
            key, _, val = token.partition("=")
            env[key] = val
    return env


def global_args(parser: DockerfileParser) -> dict[str, str]:
    args = {}
    for ins in parser.structure:
        if ins["instruction"] == "FROM":
            break
        if ins["instruction"] == "ARG":
            key, _, val = ins["value"].partition("=")
            args[key] = val
    return args


def test_two_stages_builder_then_final_on_the_base_image(parser: DockerfileParser) -> None:
    froms = [s[0]["value"] for s in stages(parser)]
    assert froms == ["${BUILDER_IMAGE} AS builder", "${BASE_IMAGE}"]


def test_entrypoint_is_exec_form_running_container_serve(parser: DockerfileParser) -> None:
    final = final_stage(parser)
    (entrypoint,) = of(final, "ENTRYPOINT")
    argv = json.loads(entrypoint)  # exec form is a JSON array; shell form would not parse
    assert argv == ["/opt/program/container/serve"]
    assert json.loads(of(final, "CMD")[-1]) == ["serve"]
    # the entrypoint is the repository's container/serve, copied as it is (mode kept)
    copies = of(final, "COPY")
    assert "container /opt/program/container" in copies
    assert os.access(ROOT / "container" / "serve", os.X_OK)


def test_sagemaker_label_port_and_offline_env(parser: DockerfileParser) -> None:
    final = final_stage(parser)
    labels = {}
    for value in of(final, "LABEL"):
        for token in shlex.split(value):
            key, _, val = token.partition("=")
            labels[key] = val
    assert labels["com.amazonaws.sagemaker.capabilities.accept-bind-to-port"] == "true"
    assert of(final, "EXPOSE") == ["8080"]
    env = env_of(final)
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["CONDA_PREFIX"] == "${CONDA_PREFIX}"  # set per flavor (sam3d: CUDA's home)


def test_final_stage_copies_the_venv_and_installs_no_build_tools(
    parser: DockerfileParser,
) -> None:
    final = final_stage(parser)
    assert "--from=builder /opt/venv /opt/venv" in of(final, "COPY")
    runs = " ".join(of(final, "RUN"))
    assert "pip install" not in runs  # packages come only from the builder's venv
    installed = re.findall(r"apt-get install ([^&;]*)", runs)
    assert installed, "the final stage installs the interpreter with apt-get"
    for packages in installed:
        assert not BUILD_TOOLS.search(packages), packages
    assert "rm -rf /var/lib/apt/lists/*" in runs  # no apt caches left behind


def test_the_image_runs_as_root_as_sagemaker_expects(parser: DockerfileParser) -> None:
    # "SageMaker AI expects all containers to run with root users" (AWS: Custom Inference
    # Code with Hosting Services); a non-root USER can fail on what the platform mounts.
    users = of(final_stage(parser), "USER")
    assert users and users[-1].split(":")[0] in ("0", "root")
    assert "useradd" not in " ".join(of(final_stage(parser), "RUN"))


def test_the_builder_is_where_compilers_go(parser: DockerfileParser) -> None:
    builder = stages(parser)[0]
    runs = " ".join(of(builder, "RUN"))
    assert BUILD_TOOLS.search(runs)  # the regex recognises what the final stage must lack
    assert env_of(builder)["PIP_NO_CACHE_DIR"] == "1"
    assert 'pip install -r "container/requirements-${FLAVOR}.txt"' in runs
    assert "pip install --no-deps ." in runs


def test_defaults_are_the_default_flavor_of_platform_json(parser: DockerfileParser) -> None:
    args = global_args(parser)
    default = platform.platform()["default_flavor"]
    assert args["FLAVOR"] == default
    assert args["BASE_IMAGE"] == platform.flavor(default)["base_image"]


@pytest.mark.parametrize("flavor", platform.flavor_names())
def test_every_flavor_has_requirements_and_only_declared_build_args(
    parser: DockerfileParser, flavor: str
) -> None:
    assert (ROOT / platform.flavor(flavor)["requirements"]).is_file()
    assert (ROOT / "container" / f"requirements-{flavor}.txt").is_file()
    declared = {i["value"].partition("=")[0] for i in parser.structure if i["instruction"] == "ARG"}
    args = platform.build_args(flavor)
    names = {a.partition("=")[0] for a in args[1::2]}
    assert names <= declared, names - declared
    assert f"FLAVOR={flavor}" in args


def test_dockerignore_lets_through_exactly_what_the_builder_copies() -> None:
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*"  # allow-list: .git, .venv, out/, tests, secrets stay out
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    assert {"pyproject.toml", "README.md", "container", "serve", "scripts"} <= allowed
    # the folder of every package pyproject.toml ships is let through
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    assert package_dir
    for folder in package_dir.values():
        assert folder.split("/")[0] in allowed, folder


# -- the sam3d flavor's install steps ---------------------------------------------------

SAM3D_LOCK = ROOT / "container" / "requirements-sam3d.txt"
SAM3D_EXT = ROOT / "container" / "requirements-sam3d-ext.txt"
# flash_attn 2.8.3's setup.py imports wheel and packaging and declares setup_requires
# psutil and ninja; `pip install -e` of upstream builds with hatchling +
# hatch-requirements-txt (its pyproject.toml). Without build isolation they must be there.
BUILD_TOOLS_FOR_NO_ISOLATION = (
    "wheel",
    "setuptools",
    "packaging",
    "psutil",
    "ninja",
    "hatchling",
    "hatch-requirements-txt",
)


def _lock_entries(text: str) -> dict[str, list[str]]:
    """name -> its lines (requirement + hashes), from a pip-tools / uv style lock."""
    entries: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith((" ", "\t")):
            current = re.split(r"[=<>!~ ;\\[]", line, maxsplit=1)[0].lower()
            entries[current] = [line]
        elif current:
            entries[current].append(line)
    return entries


def test_sam3d_lock_is_exact_and_hash_pinned() -> None:
    entries = _lock_entries(SAM3D_LOCK.read_text())
    assert len(entries) > 300  # the whole closure, not just upstream's top level
    for name, lines in entries.items():
        assert re.match(rf"^{re.escape(name)}==\S+ \\$", lines[0], re.I), lines[0]
        assert any("--hash=sha256:" in line for line in lines[1:]), name
    assert "imath" not in entries  # unrelated package whose import fails
    for tool in BUILD_TOOLS_FOR_NO_ISOLATION:
        assert tool in entries, tool


def test_sam3d_ext_requirements_are_pinned() -> None:
    for line in SAM3D_EXT.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("--find-links"):
            continue
        assert re.search(r"==[\w.]+$", line) or re.search(r"@[0-9a-f]{40}$", line), line


def test_sam3d_installs_the_lock_without_resolving_then_build_tools_precede_no_isolation(
    parser: DockerfileParser,
) -> None:
    runs = of(stages(parser)[0], "RUN")
    lock = next(i for i, r in enumerate(runs) if "requirements-sam3d.txt" in r)
    assert "--require-hashes" in runs[lock] and "--no-deps" in runs[lock]
    no_isolation = [i for i, r in enumerate(runs) if "--no-build-isolation" in r]
    assert no_isolation, "the sam3d CUDA extensions build against the installed torch"
    assert lock < min(no_isolation)
    step = runs[min(no_isolation)]
    check = step.index("import wheel")  # fails the build early if a tool is missing
    assert check < step.index("--no-build-isolation")
    for tool in ("wheel", "setuptools", "packaging", "psutil", "ninja", "hatchling"):
        assert tool in step[check : step.index("--no-build-isolation")], tool


def _urls(text: str) -> set[str]:
    return set(re.findall(r"https://[^\s\"'`)|]+", text))


def test_docs_list_every_place_the_sam3d_build_downloads_from(parser: DockerfileParser) -> None:
    docs = (ROOT / "docs" / "image.md").read_text()
    section = docs.split("## Where the `sam3d` build downloads from", 1)[1].split("\n## ", 1)[0]
    sources = "\n".join(i["value"] for i in parser.structure) + SAM3D_EXT.read_text()
    urls = {u.removeprefix("git+") for u in _urls(sources)}
    assert urls, "the build names its download URLs"
    for url in urls:
        host = url.split("/")[2]
        assert host in section, f"{url}: host {host} missing from docs/image.md"
    # each download URL sits behind a build argument the table names
    url_args = {
        i["value"].partition("=")[0]
        for i in parser.structure
        if i["instruction"] == "ARG" and "://" in i["value"]
    }
    assert {"PIP_INDEX_URL", "KAOLIN_FIND_LINKS", "GITHUB_MIRROR"} <= url_args
    for arg in url_args | {"FLASH_ATTENTION_FORCE_BUILD", "BASE_IMAGE", "BUILDER_IMAGE"}:
        assert f"`{arg}`" in section, arg
    # a requirement file with its own index would bypass KAOLIN_FIND_LINKS
    assert "--find-links" not in re.sub(r"#.*", "", SAM3D_EXT.read_text())


def test_the_github_mirror_rewrites_git_before_anything_is_cloned(
    parser: DockerfileParser,
) -> None:
    step = next(r for r in of(stages(parser)[0], "RUN") if "requirements-sam3d-ext.txt" in r)
    rewrite = step.index('url."$GITHUB_MIRROR".insteadOf https://github.com/')
    assert rewrite < step.index("pip install --no-build-isolation")
    assert rewrite < step.index("git clone")
    assert '--find-links "$KAOLIN_FIND_LINKS"' in step


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_run_local_publishes_the_port_on_loopback_only() -> None:
    """`docker run -p 8080:8080` listens on every interface: anyone on the network could
    call /invocations (and, with GEN3D_UI=1, the pages) of a local run."""
    shown = subprocess.run(
        ["make", "-n", "run-local", "FLAVOR=cpu", "MODEL_DIR=/m"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    published = re.findall(r"-p (\S+)", shown)
    assert published == ["127.0.0.1:8080:8080"], shown
