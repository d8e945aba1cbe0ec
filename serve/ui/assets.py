"""Where the viewer's files live. model-viewer is vendored at build time (`make ui-assets`,
from the npm registry), not committed: see the Makefile for the pinned version and digest."""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
TEMPLATES_DIR = Path(__file__).parent / "templates"
VIEWER_JS = STATIC_DIR / "vendor" / "model-viewer.min.js"
MISSING_VIEWER = (
    "the 3D viewer's script is not installed (serve/ui/static/vendor/model-viewer.min.js); "
    "run `make ui-assets` in the repository"
)


def viewer_installed() -> bool:
    return VIEWER_JS.is_file()
