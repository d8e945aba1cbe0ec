"""`gen3d demo` (`make demo`): start the server on 127.0.0.1 (default backend), turn the
sample photo into a GLB and a PNG preview, say where they are, stop the server."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gen3d.client import Client
from gen3d.client.preview import render_preview
from gen3d.serve.local_server import start_server

SAMPLES = Path("samples")  # the checkout's sample photo (make demo runs from the checkout)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="start a local server, turn the sample photo into a GLB + PNG preview, stop",
        description=__doc__,
    )
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    p.add_argument("--image", type=Path, default=SAMPLES / "coffee.png", help="photo")
    p.add_argument("--mask", type=Path, default=SAMPLES / "coffee_mask.png", help="object mask")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for path in (args.image, args.mask):
        if not path.is_file():
            print(
                f"error: {path} not found (run from the checkout, or pass --image/--mask)",
                file=sys.stderr,
            )
            return 2
    args.out.mkdir(parents=True, exist_ok=True)

    print("starting the server on 127.0.0.1 ...", flush=True)
    server = start_server(log_path=args.out / "server.log")
    try:
        waited = server.wait_ready(timeout_s=120)
        print(f"server ready at {server.url} after {waited:.1f} s", flush=True)
        started = time.perf_counter()
        result = Client.local(server.url, progress=None).generate(args.image, args.mask)
        took = time.perf_counter() - started
        glb = result.save(args.out / (args.image.stem + ".glb"))
        meta = result.metadata
        print(
            f"{args.image.name} + {args.mask.name} -> {meta.get('backend')} mesh with "
            f"{meta.get('faces')} faces in {took * 1000:.0f} ms"
        )
        preview = render_preview(glb, args.out / (args.image.stem + "_preview.png"))
    finally:
        server.stop()
    print(f"3D file: {glb.resolve()}")
    print(f"preview: {preview.resolve()}")
    print(f"to turn it around: gen3d view {glb}")
    return 0
