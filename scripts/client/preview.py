"""A PNG picture of a GLB / PLY / OBJ result, so a person can look without a 3D viewer.

Three-quarter and front views with hidden surfaces removed: faces turned away from the camera
are dropped (back-face culling; our meshes are closed with outward normals) and the rest are
painted far to near (depth order), so no back face shows through a front one. Gaussian-splat
PLYs get a point preview, also painted far to near. Drawn with Pillow, one polygon call per
face (about 0.1 s per view for 50 k faces; matplotlib took several times that). The file is
read back with trimesh (an independent reader), not with our writer's data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# (title, elevation, azimuth) in degrees; azimuth -90 looks at the front (glTF +z faces us).
VIEWS = (("three-quarter", 20.0, -60.0), ("front", 0.0, -90.0))
WIDTH, HEIGHT = 800, 400  # the whole picture: a title band over one square per view
TITLE_H = 56
VIEW = HEIGHT - TITLE_H  # pixels per view (square)
SUPERSAMPLE = 2  # drawn at 2x and scaled down: smooth edges without per-polygon antialiasing
HALF_EXTENT = 0.55  # each view spans [-0.55, 0.55]; models are scaled to a 0.5 radius
LIGHT = np.array([-0.3, 0.5, 1.0]) / np.linalg.norm([-0.3, 0.5, 1.0])  # camera space
AMBIENT = 0.55
POINT_RADIUS = 0.006  # splat marker radius in model units (after scaling to 0.5)
SH_C0 = 0.28209479177387814  # degree-0 spherical-harmonic constant: colour = 0.5 + C0 * f_dc


def render_preview(asset_path: Path, png_path: Path) -> Path:
    from PIL import Image, ImageDraw, ImageFont

    loaded = _load(asset_path)
    canvas = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=18)
    draw.text((WIDTH / 2, 4), asset_path.name, fill="black", font=font, anchor="ma")
    column = WIDTH // len(VIEWS)
    for index, (title, elev, azim) in enumerate(VIEWS):
        view = render_view(loaded, view_rotation(elev, azim))
        canvas.paste(view, (index * column + (column - VIEW) // 2, TITLE_H))
        draw.text((index * column + column / 2, 30), title, fill="black", font=font, anchor="ma")
    png_path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(png_path, compress_level=3)  # zlib's default 6 costs twice the time here
    return png_path


def render_view(loaded, rotation: np.ndarray):
    """One VIEW x VIEW picture of a mesh (faces) or a point cloud (no faces)."""
    from PIL import Image, ImageDraw

    size = VIEW * SUPERSAMPLE
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    if loaded.faces is not None:
        vertices = _normalised(loaded.vertices) @ rotation.T
        polygons, colors = visible_faces(vertices, loaded.faces, loaded.colors)
        pixels = np.rint(_to_pixels(polygons, size)).astype(np.int32)
        for polygon, color in zip(pixels.tolist(), map(tuple, colors.tolist()), strict=True):
            draw.polygon(polygon, fill=color)
    else:
        points = _normalised(loaded.vertices) @ rotation.T
        order = np.argsort(points[:, 2])  # far first: nearer points cover the ones behind
        centres = _to_pixels(points[order][:, None, :], size)
        r = POINT_RADIUS / (2 * HALF_EXTENT) * size
        colors = (loaded.colors[order] * 255).astype(np.uint8)
        for (x, y), color in zip(centres.tolist(), colors.tolist(), strict=True):
            draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(color))
    return image.resize((VIEW, VIEW), Image.Resampling.LANCZOS)


def view_rotation(elev_deg: float, azim_deg: float) -> np.ndarray:
    """World (glTF: y up) -> camera (x right, y up, +z toward the camera) rotation."""
    turn = -np.radians(azim_deg + 90.0)  # about the up axis; azimuth -90 is the front
    tilt = np.radians(elev_deg)  # camera raised: tops turn toward it
    about_y = np.array(
        [[np.cos(turn), 0, np.sin(turn)], [0, 1, 0], [-np.sin(turn), 0, np.cos(turn)]]
    )
    about_x = np.array(
        [[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]]
    )
    return about_x @ about_y


def visible_faces(
    vertices: np.ndarray, faces: np.ndarray, face_rgb: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Camera-space mesh -> (triangles (N, 3, 3) far to near, shaded RGB uint8 (N, 3)),
    back faces culled."""
    triangles = vertices[faces]
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    facing = normals[:, 2] > 0  # counter-clockwise seen from the camera: turned toward it
    triangles, normals, rgb = triangles[facing], normals[facing], face_rgb[facing]
    order = np.argsort(triangles[:, :, 2].mean(axis=1))  # far first, near faces paint over
    triangles, normals, rgb = triangles[order], normals[order], rgb[order]
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    shade = AMBIENT + (1 - AMBIENT) * np.clip(normals @ LIGHT, 0, 1)
    return triangles, np.clip(rgb * shade[:, None] * 255, 0, 255).astype(np.uint8)


def _to_pixels(camera_xyz: np.ndarray, size: int) -> np.ndarray:
    """(N, K, 3) camera space -> (N, 2K) pixel x, y pairs (y down)."""
    xy = (camera_xyz[:, :, :2] / (2 * HALF_EXTENT) + 0.5) * size
    xy[:, :, 1] = size - xy[:, :, 1]
    return xy.reshape(len(xy), -1)


def _normalised(vertices: np.ndarray) -> np.ndarray:
    """Centred on the bounding box, scaled to a 0.5 radius (the previews' frame)."""
    centre = (vertices.min(axis=0) + vertices.max(axis=0)) / 2
    radius = np.linalg.norm(vertices - centre, axis=1).max()
    return (vertices - centre) * (0.5 / radius if radius > 0 else 1.0)


class _Loaded:
    """Vertices, faces (None for a point cloud) and colours in [0, 1] (per face or point)."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray | None, colors: np.ndarray):
        self.vertices, self.faces, self.colors = vertices, faces, colors


def _load(path: Path) -> _Loaded:
    import trimesh

    loaded = trimesh.load(path, force="mesh" if path.suffix != ".ply" else None)
    if isinstance(loaded, trimesh.Trimesh) and len(loaded.faces):
        visual = loaded.visual.to_color() if loaded.visual.kind == "texture" else loaded.visual
        vertex_rgb = np.asarray(visual.vertex_colors)[:, :3] / 255.0
        faces = np.asarray(loaded.faces)
        return _Loaded(np.asarray(loaded.vertices), faces, vertex_rgb[faces].mean(axis=1))
    vertices = np.asarray(loaded.vertices)
    if not len(vertices):
        raise ValueError(f"{path} holds no faces and no points")
    return _Loaded(vertices, None, _point_colors(loaded))


def _point_colors(cloud) -> np.ndarray:
    """Colours of a Gaussian-splat PLY from its f_dc columns, else the cloud's own."""
    raw = cloud.metadata.get("_ply_raw", {}).get("vertex", {}).get("data")
    if raw is not None and {"f_dc_0", "f_dc_1", "f_dc_2"} <= set(raw.dtype.names or ()):
        dc = np.stack([raw[f"f_dc_{i}"] for i in range(3)], axis=1)
        return np.clip(0.5 + SH_C0 * dc, 0, 1)
    colors = getattr(cloud, "colors", None)
    if colors is not None and len(colors) == len(cloud.vertices):
        return np.asarray(colors)[:, :3] / 255.0
    return np.full((len(cloud.vertices), 3), 0.5)
