"""A PNG picture of a GLB / PLY / OBJ result, so a person can look without a 3D viewer.

The file is read back with trimesh (an independent reader), not with our writer's data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def render_preview(asset_path: Path, png_path: Path, max_faces: int = 60_000) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import trimesh
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    loaded = trimesh.load(asset_path, force="mesh" if asset_path.suffix != ".ply" else None)
    fig = plt.figure(figsize=(8, 4), dpi=100)
    views = [(20, -60, "three-quarter"), (0, -90, "front")]
    for index, (elev, azim, title) in enumerate(views, start=1):
        ax = fig.add_subplot(1, 2, index, projection="3d")
        if isinstance(loaded, trimesh.Trimesh) and len(loaded.faces):
            mesh = loaded
            faces = mesh.faces
            if len(faces) > max_faces:  # keep the render quick; a preview needs no more
                faces = faces[np.linspace(0, len(faces) - 1, max_faces).astype(int)]
            colors = mesh.visual.vertex_colors[faces].mean(axis=1) / 255.0
            # glTF is y-up; matplotlib's 3D axes are z-up: plot (x, -z, y).
            verts = mesh.vertices[:, [0, 2, 1]] * np.array([1, -1, 1])
            ax.add_collection3d(Poly3DCollection(verts[faces], facecolors=colors, linewidths=0))
        else:
            points = np.asarray(loaded.vertices)[:, [0, 2, 1]] * np.array([1, -1, 1])
            colors = _splat_colors(asset_path, len(points))
            ax.scatter(points[:, 0], points[:, 1], points[:, 2], c=colors, s=1, linewidths=0)
        ax.set(xlim=(-0.55, 0.55), ylim=(-0.55, 0.55), zlim=(-0.55, 0.55), title=title)
        ax.view_init(elev=elev, azim=azim)
        ax.set_axis_off()
    fig.suptitle(asset_path.name)
    fig.tight_layout()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path)
    plt.close(fig)
    return png_path


def _splat_colors(path: Path, count: int) -> np.ndarray:
    """Colours of a Gaussian-splat PLY from its f_dc columns (degree-0 SH)."""
    from plyfile import PlyData

    vertex = PlyData.read(str(path))["vertex"]
    try:
        dc = np.stack([vertex[f"f_dc_{i}"] for i in range(3)], axis=1)
    except ValueError:
        return np.full((count, 3), 0.5)
    return np.clip(0.5 + 0.28209479177387814 * dc, 0, 1)
