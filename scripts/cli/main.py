"""`gen3d`: one console command; this module only parses and dispatches.

Each subcommand lives in scripts/cli/commands/<name>.py (gen3d.cli.commands) and exposes
`register(subparsers) -> None`, which adds its parser and sets `func` (args -> exit code).
Modules are discovered, so adding a command touches no shared file.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from gen3d.cli import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gen3d",
        description="Serve image-to-3D on Amazon SageMaker: run the server, optimise and "
        "benchmark models, push the image, deploy, price and tear down.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def run() -> int:
    """The console command (and `python -m gen3d.cli`): main(), then a process exit with no
    full collection over what it imported (torch's took 0.3 s of every command's exit)."""
    code = main()
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(run())
