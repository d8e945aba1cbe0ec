"""The try-it page, Swagger UI and the OpenAPI document as Flask blueprints.

`register(app)` is all the app calls (only when GEN3D_UI is on). Everything is served from
this package or from pip packages, so the pages work with no internet: Swagger UI's files
come from flask-swagger-ui, the 3D viewer from serve/ui/static/vendor (`make ui-assets`).
"""

from __future__ import annotations

from importlib import resources

from flask import Blueprint, Flask, Response, render_template, request
from flask_swagger_ui import get_swaggerui_blueprint

from gen3d.serve import __version__
from gen3d.serve.errors import BadRequest, Unprocessable
from gen3d.serve.ui import local_guard
from gen3d.serve.ui.assets import MISSING_VIEWER, STATIC_DIR, TEMPLATES_DIR, viewer_installed
from gen3d.serve.ui.viewable import NotViewable, viewable_glb

OPENAPI_PATH = "/openapi.yaml"
DOCS_PATH = "/docs"
VIEWABLE_PATH = "/ui/viewable.glb"
_FORMATS = {"application/ply": "ply", "application/octet-stream": None, "model/obj": "obj"}
# A result the server made can be larger than the request limit (GEN3D_MAX_BODY_MB) that
# guards /invocations; the page sends it back here for the viewer. 64 MB holds a splat PLY
# of a million Gaussians (62 bytes each in our writer) or an OBJ of the largest face
# budget (200 000 faces, about 9 MB) many times over; more is no result of ours.
VIEWABLE_MAX_BYTES = 64 * 1024 * 1024

pages = Blueprint(
    "gen3d_ui",
    __name__,
    static_folder=str(STATIC_DIR),
    static_url_path="/ui/static",
    template_folder=str(TEMPLATES_DIR),
)


@pages.get("/")
def try_it() -> str:
    return render_template(
        "gen3d_tryit.html",
        version=__version__,
        missing_viewer=None if viewer_installed() else MISSING_VIEWER,
        docs_path=DOCS_PATH + "/",
        viewable_path=VIEWABLE_PATH,
    )


@pages.get(OPENAPI_PATH)
def openapi_document() -> Response:
    text = resources.files("gen3d.serve").joinpath("openapi.yaml").read_bytes()
    return Response(text, mimetype="application/yaml")


@pages.post(VIEWABLE_PATH)
def viewable() -> Response:
    """A PLY or OBJ result (the request body) as a GLB for the viewer."""
    try:
        request.max_content_length = VIEWABLE_MAX_BYTES  # a per-request limit: Flask >= 3.1
    except AttributeError:  # Flask 3.0 (the sam3d image's pin): GEN3D_MAX_BODY_MB applies
        pass
    data = request.get_data()
    if not data:
        raise BadRequest("send the PLY or OBJ file as the request body")
    media = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    try:
        glb = viewable_glb(data, _FORMATS.get(media))
    except NotViewable as exc:
        raise Unprocessable(str(exc)) from None
    return Response(glb, mimetype="model/gltf-binary")


def register(app: Flask, extra_hosts: tuple[str, ...] = ()) -> None:
    """Add the try-it page (/), /openapi.yaml, Swagger UI (/docs) and the viewer's files;
    from then on the whole app answers only loopback host names (and `extra_hosts`,
    GEN3D_UI_HOSTS) from its own origin (gen3d.serve.ui.local_guard)."""
    local_guard.install(app, extra_hosts)
    app.register_blueprint(pages)
    swagger = get_swaggerui_blueprint(
        DOCS_PATH,
        OPENAPI_PATH,
        # validatorUrl None: Swagger UI would otherwise send the spec to an online validator.
        config={"app_name": "Gen3D API", "validatorUrl": None, "tryItOutEnabled": False},
        blueprint_name="gen3d_swagger_ui",
    )
    app.register_blueprint(swagger)
