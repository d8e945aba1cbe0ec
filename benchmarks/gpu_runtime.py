"""What the GPU check's target machine has, and which wheels `make gpu-wheels` ships to it.

The target (an offline GPU box; docs in benchmarks/README.md) has Python 3.12 with torch
(a CUDA build) and these packages preinstalled; everything else the check imports comes
from wheels shipped beside the repository. The wheels are the project's runtime
requirements and matplotlib (the plots), closed over their own requirements, minus what
the preinstalled packages already bring (closed the same way), at the versions of the
environment that runs `make gpu-wheels` (the one the tests pass in).
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

PREINSTALLED = (
    "torch",
    "numpy",
    "pillow",
    "scikit-image",
    "safetensors",
    "onnxruntime",
    "opencv-python-headless",
)
EXTRA_NEEDS = ("matplotlib",)  # the check's plots
# boto3 is the AWS operator scripts' (gen3d.aws): the check and the server never call AWS,
# and botocore alone is a 13 MB wheel of the 40 MiB that can be shipped
NOT_NEEDED = ("boto3",)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _marker_env(python_version: str) -> dict[str, str]:
    return {
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }


def requirements(dist: str, python_version: str) -> list[str]:
    """The names `dist` requires on the target (markers evaluated there, no extras)."""
    from packaging.requirements import Requirement

    names = []
    for line in metadata.requires(dist) or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(_marker_env(python_version)):
            continue
        names.append(canonical(req.name))
    return names


def closure(roots: list[str], python_version: str) -> dict[str, str]:
    """Every distribution reached from `roots` through requirements: name -> the version
    installed here. A requirement not installed here is an error (its wheel is unknown)."""
    found: dict[str, str] = {}
    todo = [canonical(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"gpu-wheels: {name} is required but not installed here") from None
        todo += requirements(name, python_version)
    return found


def missing(python_version: str) -> dict[str, str]:
    """name -> version of every wheel the target lacks."""
    roots = [n for n in requirements("gen3d", python_version) if n not in NOT_NEEDED]
    needed = closure([*roots, *EXTRA_NEEDS], python_version)
    there = closure(list(PREINSTALLED), python_version)
    return {n: v for n, v in sorted(needed.items()) if n not in there}


def link_preinstalled(dest: Path, python_version: str) -> list[str]:
    """The rehearsal's stand-in for the target's preinstalled packages: a folder of
    symlinks to exactly PREINSTALLED and their requirements as installed here (package
    folders, modules and .dist-info), nothing else. Returns the distributions linked."""
    dest.mkdir(parents=True, exist_ok=True)
    linked = closure(list(PREINSTALLED), python_version)
    for name in linked:
        dist = metadata.distribution(name)
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in sorted(tops):
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (dest / top).exists() and top != "__pycache__":
                (dest / top).symlink_to(source)
    return sorted(linked)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m gen3d.benchmarks.gpu_runtime",
        description="Print the wheels the GPU target lacks, or link the preinstalled set.",
    )
    parser.add_argument("action", choices=["missing", "link"])
    parser.add_argument("--dest", type=Path, help="link: the folder of symlinks")
    parser.add_argument("--python-version", default=".".join(map(str, sys.version_info[:2])))
    args = parser.parse_args(argv)
    if args.action == "missing":
        for name, version in missing(args.python_version).items():
            print(f"{name}=={version}")
        return 0
    if args.dest is None:
        parser.error("link needs --dest")
    names = link_preinstalled(args.dest, args.python_version)
    print(f"gpu-runtime: {len(names)} preinstalled distributions linked into {args.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
