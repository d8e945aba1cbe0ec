"""What every backend's result goes through before it is encoded (issue 15): the face
budget (`options.target_faces`), the texture check, and the mask the request used.

Runs on the request's thread after the model thread answered, so it costs the model
nothing. Decimation is quadric edge collapse from fast-simplification (the library
trimesh's `simplify_quadric_decimation` calls); vertex colours and UVs follow the
collapses, each kept vertex taking the mean of the vertices merged into it.
"""

from __future__ import annotations

import numpy as np

from gen3d.serve import request_options
from gen3d.serve.assets import Asset, Mesh
from gen3d.serve.backends.base import Sample
from gen3d.serve.errors import Gen3DError, Unprocessable


def finish(sample: Sample, result: Asset | Gen3DError) -> Asset | Gen3DError:
    """`result` with the request's options applied, or the error in its slot."""
    if isinstance(result, Gen3DError):
        return result
    try:
        opts = request_options.parse(sample.options)
        if sample.mask is not None:
            result.mask = sample.mask
            result.metadata["mask_source"] = sample.mask_source
        mesh = result.mesh
        if opts.texture == "image" and (mesh is None or mesh.texture is None):
            backend = result.metadata.get("backend", "this backend")
            raise Unprocessable(
                f"option texture=image is not available on backend {backend!r}: it returns "
                "vertex colours only; use texture=vertex"
            )
        if opts.target_faces is not None and mesh is not None:
            result.metadata["faces_before"] = len(mesh.faces)
            if len(mesh.faces) > opts.target_faces:
                result.mesh = decimate(mesh, opts.target_faces)
            result.metadata["faces_after"] = len(result.mesh.faces)
            result.metadata["faces"] = len(result.mesh.faces)
            result.metadata["vertices"] = len(result.mesh.vertices)
    except Gen3DError as exc:
        return exc
    return result


def decimate(mesh: Mesh, target_faces: int) -> Mesh:
    """`mesh` reduced to at most `target_faces` faces by quadric edge collapse."""
    import fast_simplification

    _, _, collapses = fast_simplification.simplify(
        mesh.vertices,
        mesh.faces.astype(np.int64),
        target_count=target_faces,
        return_collapses=True,
    )
    # Replaying the collapses gives the old-vertex -> new-vertex map the colours need.
    points, faces, mapping = fast_simplification.replay_simplification(
        mesh.vertices.astype(np.float32), mesh.faces.astype(np.int32), collapses
    )
    if len(faces) > target_faces:  # the collapse order can leave a few faces over
        _, _, more = fast_simplification.simplify(
            points, faces, target_count=target_faces, return_collapses=True, agg=9.0
        )
        points, faces, second = fast_simplification.replay_simplification(
            np.asarray(points, np.float32), np.asarray(faces, np.int32), more
        )
        mapping = second[mapping]
    count = len(points)
    colors = _mean_by(mapping, mesh.vertex_colors.astype(np.float64), count)
    uv = _mean_by(mapping, mesh.uv.astype(np.float64), count) if mesh.uv is not None else None
    return Mesh(
        vertices=points,
        faces=faces,
        vertex_colors=np.rint(colors).astype(np.uint8),
        uv=uv,
        texture=mesh.texture,
    )


def _mean_by(mapping: np.ndarray, values: np.ndarray, count: int) -> np.ndarray:
    """Per new vertex, the mean of `values` over the old vertices mapped onto it."""
    weight = np.bincount(mapping, minlength=count).astype(np.float64)
    columns = [np.bincount(mapping, values[:, c], minlength=count) for c in range(values.shape[1])]
    return np.stack(columns, axis=1) / np.maximum(weight, 1)[:, None]
