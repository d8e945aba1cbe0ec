"""`make demo`: start the server on 127.0.0.1 (default backend), turn the sample photo
into a GLB and a PNG preview, say where they are, stop the server."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from scripts.client import encode_request, metadata_of, post_invocation
from scripts.preview import render_preview
from serve.launcher import start_server

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    parser.add_argument("--image", type=Path, default=SAMPLES / "coffee.png")
    parser.add_argument("--mask", type=Path, default=SAMPLES / "coffee_mask.png")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    print("starting the server on 127.0.0.1 ...", flush=True)
    server = start_server(log_path=args.out / "server.log")
    try:
        waited = server.wait_ready(timeout_s=120)
        print(f"server ready at {server.url} after {waited:.1f} s", flush=True)
        request = encode_request(args.image, args.mask, "glb", seed=0)
        started = time.perf_counter()
        data = post_invocation(server.url, request)
        took = time.perf_counter() - started
        glb = args.out / (args.image.stem + ".glb")
        glb.write_bytes(data)
        meta = metadata_of(data)
        print(
            f"{args.image.name} + {args.mask.name} -> {meta.get('backend')} mesh with "
            f"{meta.get('faces')} faces in {took * 1000:.0f} ms"
        )
        preview = render_preview(glb, args.out / (args.image.stem + "_preview.png"))
    finally:
        server.stop()
    print(f"3D file: {glb.resolve()}")
    print(f"preview: {preview.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
