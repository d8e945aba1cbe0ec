"""A tiny proxy model shared by the model_opt tests, and a GLB geometry reader."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from gen3d.model_opt.proxy_model import init_proxy_model
from gen3d.serve.backends.proxy.model import config_for


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("proxy-tiny")
    init_proxy_model(config_for("tiny"), 0, out)
    return out


def _glb_geometry(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    mesh = trimesh.load(io.BytesIO(data), file_type="glb", force="mesh", process=False)
    return np.asarray(mesh.vertices), np.asarray(mesh.faces)


@pytest.fixture
def glb_geometry() -> Callable[[bytes], tuple[np.ndarray, np.ndarray]]:
    """Vertices and faces of a GLB, read by trimesh (an independent reader)."""
    return _glb_geometry
