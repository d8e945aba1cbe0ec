"""`gen3d view`: the try-it page's viewer on a local file, served on loopback or written as
one self-contained HTML file (viewer script and model inlined, so it opens offline)."""

from __future__ import annotations

import base64

from flask import Flask, Response, render_template, url_for

from gen3d.serve.ui import local_guard
from gen3d.serve.ui.assets import (
    MISSING_VIEWER,
    STATIC_DIR,
    TEMPLATES_DIR,
    VIEWER_JS,
    viewer_installed,
)

MODEL_PATH = "/model.glb"


class ViewerMissing(RuntimeError):
    """The vendored viewer script is absent (`make ui-assets`)."""


def _require_viewer() -> None:
    if not viewer_installed():
        raise ViewerMissing(MISSING_VIEWER)


def standalone_html(glb: bytes, title: str) -> str:
    """One HTML file: model-viewer's script and the GLB as base64, no other file needed."""
    _require_viewer()
    app = Flask("gen3d_view", template_folder=str(TEMPLATES_DIR))
    app.jinja_env.globals["csp_nonce"] = local_guard.csp_nonce  # "" here: no request
    with app.app_context():
        return render_template(
            "gen3d_view.html",
            title=title,
            viewer_script_url=None,
            viewer_script_b64=base64.b64encode(VIEWER_JS.read_bytes()).decode("ascii"),
            model_url="data:model/gltf-binary;base64," + base64.b64encode(glb).decode("ascii"),
        )


def view_app(glb: bytes, title: str, extra_hosts: tuple[str, ...] = ()) -> Flask:
    """A Flask app with the viewer page at / and the model at /model.glb, answering only
    loopback host names (and `extra_hosts`) from its own origin (gen3d.serve.ui.local_guard)."""
    _require_viewer()
    app = Flask(
        "gen3d_view",
        static_folder=str(STATIC_DIR),
        static_url_path="/ui/static",
        template_folder=str(TEMPLATES_DIR),
    )

    @app.get("/")
    def page() -> str:
        return render_template(
            "gen3d_view.html",
            title=title,
            viewer_script_url=url_for("static", filename="vendor/model-viewer.min.js"),
            model_url=MODEL_PATH,
        )

    @app.get(MODEL_PATH)
    def model() -> Response:
        return Response(glb, mimetype="model/gltf-binary")

    local_guard.install(app, extra_hosts)
    return app
