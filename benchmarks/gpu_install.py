"""Install the GPU check's wheels offline: `pip install --no-index --no-deps --target`.

Runs with the target's own python3 before the project is importable, so it uses the
standard library only. It refuses a project wheel older than the checkout (a file of the
checkout differs from the wheel's RECORD, or is missing from it: rerun `make gpu-wheels`),
installs every wheel of WHEELS into a fresh TARGET with no index configured, and prints
the PYTHONPATH that makes them importable.

    python3 benchmarks/gpu_install.py --wheels .gpu-wheels --target .gpu-site
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import os
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def package_dirs(root: Path) -> dict[str, Path]:
    """gen3d/<sub>/ inside the wheel -> the checkout folder (pyproject's package-dir)."""
    data = tomllib.loads((root / "pyproject.toml").read_text())
    mapping = data["tool"]["setuptools"]["package-dir"]
    return {name.replace(".", "/") + "/": root / folder for name, folder in mapping.items()}


def stale_files(wheel: Path, root: Path) -> list[str]:
    """Checkout .py files whose bytes differ from the wheel's, or that it lacks."""
    dirs = package_dirs(root)
    with zipfile.ZipFile(wheel) as zf:
        record_name = next(n for n in zf.namelist() if n.endswith(".dist-info/RECORD"))
        rows = csv.reader(io.StringIO(zf.read(record_name).decode()))
        recorded = {path: digest for path, digest, *_ in rows if digest}
    stale = []
    for prefix, folder in dirs.items():
        for source in sorted(folder.rglob("*.py")):
            inner = prefix + source.relative_to(folder).as_posix()
            if "__pycache__" in inner:
                continue
            digest = hashlib.sha256(source.read_bytes()).digest()
            want = "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if recorded.get(inner) != want:
                stale.append(source.relative_to(root).as_posix())
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, required=True)
    parser.add_argument("--target", type=Path, required=True)
    args = parser.parse_args(argv)
    wheels = sorted(args.wheels.glob("*.whl"))
    project = [w for w in wheels if w.name.startswith("gen3d-")]
    if not project:
        print(
            f"gpu-install: no project wheel in {args.wheels}: run `make gpu-wheels` "
            "on a machine with the network, and ship that folder",
            file=sys.stderr,
        )
        return 2
    stale = stale_files(project[0], ROOT)
    if stale:
        print(
            f"gpu-install: {project[0].name} is older than the checkout ({len(stale)} file(s) "
            f"differ, e.g. {', '.join(stale[:3])}): rerun `make gpu-wheels`",
            file=sys.stderr,
        )
        return 2
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode:
        print(
            f"gpu-install: {sys.executable} has no pip (python3 -m ensurepip installs the "
            "one bundled with Python, offline)",
            file=sys.stderr,
        )
        return 2
    started = time.monotonic()
    shutil.rmtree(args.target, ignore_errors=True)
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1"}
    env.pop("PIP_INDEX_URL", None)
    env.pop("PIP_EXTRA_INDEX_URL", None)
    env.pop("PIP_FIND_LINKS", None)
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--no-index",
        "--no-deps",
        "--target",
        str(args.target),
        *map(str, wheels),
    ]
    done = subprocess.run(command, env=env, check=False)
    if done.returncode != 0:
        print(f"gpu-install: pip failed ({done.returncode})", file=sys.stderr)
        return done.returncode
    size = sum(p.stat().st_size for p in args.target.rglob("*") if p.is_file()) / 2**20
    print(
        f"gpu-install: {len(wheels)} wheels into {args.target} ({size:.0f} MiB) in "
        f"{time.monotonic() - started:.1f} s, no index",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
