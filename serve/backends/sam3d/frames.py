"""SAM 3D's frames and ours: one rigid rotation puts mesh, splat and pose together.

Upstream at cf066761 (facts recorded in tests/fixtures/sam3d_upstream_contract.json):
- the decoders' mesh and Gaussians share one object frame, z up;
- `to_glb` (model/backbone/tdfy_dit/utils/postprocessing_utils.py:666) rotates only the
  mesh to y up: `vertices @ [[1,0,0],[0,0,-1],[0,1,0]]`; the Gaussians (`gs`) stay z up;
- the pose ("rotation" quaternion w x y z, "translation", "scale", from
  pipeline/inference_utils.py:pose_decoder) places the z-up object frame in PyTorch3D's
  camera frame (x left, y up, +z into the scene) with row vectors:
  `p_camera = (scale * p_object) @ R(rotation) + translation`
  (data/dataset/tdfy/transforms_3d.py:compose_transform; layout_post_optimization_utils
  .py:116 undoes to_glb's rotation before applying it, which confirms the frame).

Gen3D's convention (serve/outputs/assets.py) is glTF's with the photo as the view: +y up, +x to
the right of the photo, +z towards the camera. So both outputs get
`p_out = p_object @ R(rotation) @ diag(-1, 1, -1)`: the object as the camera saw it,
re-expressed in the OpenGL camera axes. Scale and translation stay in the pose.
"""

from __future__ import annotations

import numpy as np

# postprocessing_utils.py:666, applied to row vectors: v_glb = v_object @ GLB_Z_TO_Y_UP
GLB_Z_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
# PyTorch3D camera (x left, y up, z forward) -> OpenGL camera (x right, y up, z back)
P3D_TO_GL = np.diag([-1.0, 1.0, -1.0])


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) -> 3x3 rotation, column-vector convention (as
    pytorch3d.transforms.quaternion_to_matrix)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quaternion(m: np.ndarray) -> np.ndarray:
    """3x3 rotation -> unit quaternion (w, x, y, z) with w >= 0 (Shepperd's method)."""
    m = np.asarray(m, dtype=np.float64)
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0, 0.0, 0.0, 0.0]
        q[0] = (m[k, j] - m[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (m[j, i] + m[i, j]) / s
        q[1 + k] = (m[k, i] + m[i, k]) / s
    q = np.array(q)
    return q if q[0] >= 0 else -q


def quaternion_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b for (..., 4) arrays in (w, x, y, z) order."""
    aw, ax, ay, az = np.moveaxis(np.asarray(a, dtype=np.float64), -1, 0)
    bw, bx, by, bz = np.moveaxis(np.asarray(b, dtype=np.float64), -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def object_to_output(rotation: np.ndarray | None) -> np.ndarray:
    """Row-vector matrix W with p_out = p_object @ W. Without a pose the object frame is
    only turned y up (upstream's GLB axes), not aligned with the photo."""
    if rotation is None:
        return GLB_Z_TO_Y_UP
    return quaternion_to_matrix(rotation) @ P3D_TO_GL


def rotate_orientations(quaternions: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per-Gaussian orientations (w, x, y, z; local -> object, column convention) after
    the points were mapped with p @ w: the column-convention rotation is w.T."""
    return quaternion_multiply(matrix_to_quaternion(w.T), quaternions)
