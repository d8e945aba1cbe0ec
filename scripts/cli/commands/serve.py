"""`gen3d serve`: run the inference server locally (the image's nginx + gunicorn set-up)."""

from __future__ import annotations

import argparse
import os

from gen3d.serve.local_server import server_command


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the inference server (nginx + gunicorn, SageMaker contract)",
        description="Run the server in the foreground. Settings come from GEN3D_* variables; "
        "the flags below override the common ones. Unlike the image, it also serves the "
        "try-it page at / and Swagger UI at /docs/ (GEN3D_UI=1; --no-ui turns them off).",
    )
    p.add_argument("--backend", help="silhouette (default), proxy or sam3d")
    p.add_argument("--model-dir", help="model artifacts (default /opt/ml/model)")
    p.add_argument("--port", type=int, help="port to listen on (default 8080)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1). With the pages on, the server answers "
        "only loopback host names: list others in GEN3D_UI_HOSTS",
    )
    p.add_argument(
        "--no-ui",
        action="store_true",
        help="serve only the SageMaker routes: no try-it page at / and no /docs/",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    if args.backend:
        env["GEN3D_BACKEND"] = args.backend
    if args.model_dir:
        env["GEN3D_MODEL_DIR"] = str(args.model_dir)
    if args.port:
        env["SAGEMAKER_BIND_TO_PORT"] = str(args.port)
    env["GEN3D_BIND_HOST"] = args.host
    env["GEN3D_UI"] = "0" if args.no_ui else (env.get("GEN3D_UI") or "1")
    if env["GEN3D_UI"].strip().lower() in ("1", "true", "yes", "on"):
        port = args.port or env.get("SAGEMAKER_BIND_TO_PORT", "8080")
        print(f"gen3d serve: try it at http://{args.host}:{port}/ (API docs: /docs/)", flush=True)
    cmd = server_command()
    os.execvpe(cmd[0], cmd, env)
    return 0  # not reached
