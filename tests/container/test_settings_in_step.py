"""The settings named in docs/, README.md and the Dockerfile are the ones the code reads.

A variable the docs name but nothing reads (or one the image sets and nobody reads) is a
setting that silently does nothing; a setting the code reads but no doc names is one
nobody can find. Settings are serve/settings.py's ENV_VARIABLES (and its aliases); build
arguments are the Dockerfile's ARGs; a few variables are read elsewhere, each listed
below with the file that reads it.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from dockerfile_parse import DockerfileParser

from gen3d.serve.settings import ALIASES, ENV_VARIABLES

ROOT = Path(__file__).resolve().parents[2]
# the project's own variable families (third-party ones such as HF_HOME are theirs)
OURS = re.compile(r"\b(?:GEN3D|SAM3D|SAGEMAKER|MODEL_SERVER)_[A-Z0-9_]+\b")
# read outside Settings: variable -> the file that reads it
OTHER_READERS = {
    "GEN3D_SCREENSHOT_DIR": "tests/ui/test_browser.py",  # where the UI test keeps screenshots
    "CONDA_PREFIX": "serve/backends/sam3d/loading.py",  # upstream's notebook needs it at import
    # the supervisor hands each gunicorn these (not the user's to set)
    "GEN3D_CAPACITY_PLAN": "serve/model/capacity.py",
    "GEN3D_MAX_INPUT_BYTES": "scripts/aws/lambda_handler.py",  # the upload Lambda's limit
}
# set in the image for the interpreter or third-party libraries, with who reads them
THIRD_PARTY_ENV = {
    "PATH": "the shell: the venv's bin first",
    "PYTHONUNBUFFERED": "CPython",
    "PYTHONDONTWRITEBYTECODE": "CPython",
    "HF_HUB_OFFLINE": "huggingface_hub",
    "TRANSFORMERS_OFFLINE": "transformers",
    "PIP_NO_CACHE_DIR": "pip (builder stage)",
    "PIP_DISABLE_PIP_VERSION_CHECK": "pip (builder stage)",
}


def _docs() -> dict[str, str]:
    files = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in files}


def _dockerfile() -> DockerfileParser:
    return DockerfileParser(path=str(ROOT / "Dockerfile"))


def _build_args(parser: DockerfileParser) -> set[str]:
    return {i["value"].partition("=")[0] for i in parser.structure if i["instruction"] == "ARG"}


def _env_set(parser: DockerfileParser) -> set[str]:
    names = set()
    for ins in parser.structure:
        if ins["instruction"] == "ENV":
            names |= {token.partition("=")[0] for token in shlex.split(ins["value"])}
    return names


def _read_by_settings() -> set[str]:
    return set(ENV_VARIABLES) | set(ALIASES)


def test_every_variable_the_docs_name_is_read_or_a_build_arg() -> None:
    known = _read_by_settings() | _build_args(_dockerfile()) | set(OTHER_READERS)
    stray = {
        f"{name} ({doc})"
        for doc, text in _docs().items()
        for name in OURS.findall(text)
        if name not in known
    }
    assert not stray, f"named in the docs, read by nothing: {sorted(stray)}"


def test_every_variable_the_image_sets_is_read() -> None:
    parser = _dockerfile()
    unread = {
        name
        for name in _env_set(parser)
        if name not in _read_by_settings()
        and name not in OTHER_READERS
        and name not in THIRD_PARTY_ENV
    }
    assert not unread, f"the Dockerfile sets {sorted(unread)} and nothing reads them"


def test_every_setting_is_documented() -> None:
    named = set().union(*(set(OURS.findall(text)) for text in _docs().values()))
    undocumented = _read_by_settings() - named
    assert not undocumented, f"settings no doc names: {sorted(undocumented)}"


def test_the_other_readers_read_what_they_are_listed_for() -> None:
    for name, path in OTHER_READERS.items():
        source = (ROOT / path).read_text(encoding="utf-8")
        # read by its literal name, or through a constant that holds it
        constants = re.findall(rf"^(\w+) = [\"']{name}[\"']", source, re.M)
        assert (
            re.search(rf"environ(\.get\(|\[)\s*[\"']{name}[\"']", source)
            or (f'"{name}":' in source and "os.environ" in source)
            or any(re.search(rf"(\.get\(|\[){c}\b", source) for c in constants)
        ), f"{path} does not read {name}"
