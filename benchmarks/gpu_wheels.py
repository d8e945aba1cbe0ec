"""`make gpu-wheels`: the wheels an offline GPU machine needs for `make gpu-check`.

Downloads (pip, binary wheels only, manylinux x86-64, for the target's Python: 3.12 by
default) the runtime requirements the target lacks (gen3d.benchmarks.gpu_runtime), at the
versions installed here, and builds the project's own wheel, into DEST (an ignored
folder). Refuses a set over the 40 MiB budget. The target installs them with
`pip install --no-index --no-deps --target` (benchmarks/gpu_install.py): never the network.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from gen3d.benchmarks.gpu_runtime import missing

LIMIT_MIB = 40.0
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64")


def download(wanted: dict[str, str], dest: Path, python_version: str) -> None:
    abi = "cp" + python_version.replace(".", "")
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "--abi",
        abi,
        *(a for p in PLATFORMS for a in ("--platform", p)),
        "-d",
        str(dest),
        *(f"{name}=={version}" for name, version in wanted.items()),
    ]
    subprocess.run(command, check=True)


def build_project(root: Path, dest: Path) -> None:
    """The project's wheel (pure Python): what `gpu_install` puts on the target."""
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dest)]
    subprocess.run([*command, str(root)], check=True)
    shutil.rmtree(root / "build", ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gen3d.benchmarks.gpu_wheels", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--dest", type=Path, default=Path(".gpu-wheels"))
    parser.add_argument("--python-version", default="3.12", help="the target's Python")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the checkout")
    args = parser.parse_args(argv)
    wanted = missing(args.python_version)
    if args.dest.exists():
        shutil.rmtree(args.dest)
    args.dest.mkdir(parents=True)
    print(
        f"gpu-wheels: {len(wanted)} wheels for cp{args.python_version}: "
        + ", ".join(f"{n}=={v}" for n, v in wanted.items()),
        flush=True,
    )
    download(wanted, args.dest, args.python_version)
    build_project(args.root, args.dest)
    wheels = sorted(args.dest.glob("*.whl"))
    total = sum(p.stat().st_size for p in wheels) / 2**20
    print(f"gpu-wheels: {len(wheels)} files, {total:.1f} MiB in {args.dest}")
    if total > LIMIT_MIB:
        print(
            f"gpu-wheels: {total:.1f} MiB is over the {LIMIT_MIB:.0f} MiB budget", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
