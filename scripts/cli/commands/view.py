"""`gen3d view FILE`: look at a GLB / PLY / OBJ in the 3D viewer of the try-it page."""

from __future__ import annotations

import argparse
import signal
import sys
import webbrowser
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "view",
        help="look at a GLB / PLY / OBJ file in the 3D viewer (browser; works offline)",
        description="Open FILE in the same 3D viewer as the try-it page: a small server on "
        "127.0.0.1 plus your browser (Ctrl-C stops it), or, with --html, one self-contained "
        "HTML file to open or share. A Gaussian-splat PLY is shown as one small marker per "
        "Gaussian in its colour.",
    )
    p.add_argument("file", type=Path, help="a .glb, .ply or .obj file")
    p.add_argument(
        "--html", type=Path, metavar="OUT", help="write a self-contained HTML file and exit"
    )
    p.add_argument("--port", type=int, default=0, help="port to serve on (default: a free one)")
    p.add_argument(
        "--no-browser", action="store_true", help="print the address only; open no browser"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gen3d.serve.ui.view import ViewerMissing, standalone_html, view_app
    from gen3d.serve.ui.viewable import NotViewable, viewable_glb

    if not args.file.is_file():
        print(f"gen3d view: no such file: {args.file}", file=sys.stderr)
        return 2
    try:
        glb = viewable_glb(args.file.read_bytes())
        if args.html:
            args.html.parent.mkdir(parents=True, exist_ok=True)
            args.html.write_text(standalone_html(glb, args.file.name), encoding="utf-8")
            print(f"wrote {args.html} ({args.html.stat().st_size:,} bytes; opens offline)")
            return 0
        app = view_app(glb, args.file.name)
    except NotViewable as exc:
        print(f"gen3d view: {args.file}: {exc}", file=sys.stderr)
        return 2
    except ViewerMissing as exc:
        print(f"gen3d view: {exc}", file=sys.stderr)
        return 1
    return _serve(app, args.port, open_browser=not args.no_browser, name=args.file.name)


def _stop(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _serve(app, port: int, open_browser: bool, name: str) -> int:
    from werkzeug.serving import make_server

    # Ctrl-C and SIGTERM stop the server even when this process was started with SIGINT
    # ignored (a job started with & by a non-interactive shell is): Python then leaves
    # SIGINT ignored, and "Ctrl-C to stop" would not stop it.
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    server = make_server("127.0.0.1", port, app, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}/"
    print(f"viewing {name} at {url} (Ctrl-C to stop)", flush=True)
    if open_browser and not webbrowser.open(url):
        print("no browser found here: open the address above in one", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
