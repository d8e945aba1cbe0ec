"""Where the viewer's files live. model-viewer is committed under static/vendor/ with its
licence (`tools/vendor-viewer.sh` fetched it from the npm registry, pinned by version and
the tarball's sha512; VIEWER_SHA256 is the file's own digest, which a test checks)."""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
TEMPLATES_DIR = Path(__file__).parent / "templates"
VIEWER_JS = STATIC_DIR / "vendor" / "model-viewer.min.js"
VIEWER_VERSION = "4.4.0"  # @google/model-viewer
VIEWER_SHA256 = "18b2e711035aa4705ee281530a55dc2338ff05eed3d70ae16d54105282a75ed5"
MISSING_VIEWER = (
    "the 3D viewer's script is not installed (serve/ui/static/vendor/model-viewer.min.js); "
    "reinstall gen3d, or run `make ui-assets` in the repository"
)


def viewer_installed() -> bool:
    return VIEWER_JS.is_file()
