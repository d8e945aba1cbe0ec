"""Chamfer distance and volume IoU against closed-form answers for spheres."""

from __future__ import annotations

import math

import pytest
import trimesh

from gen3d.model_opt.metrics import chamfer_distance, volume_iou


def sphere(shift: float = 0.0) -> tuple:
    mesh = trimesh.creation.icosphere(4, 0.5)
    mesh.apply_translation([shift, 0, 0])
    return mesh.vertices, mesh.faces


@pytest.mark.slow  # voxelizes meshes
def test_identical_meshes() -> None:
    assert chamfer_distance(sphere(), sphere()) == 0.0
    assert volume_iou(sphere(), sphere()) == 1.0


@pytest.mark.slow  # voxelizes meshes
def test_shifted_spheres_match_closed_form() -> None:
    r, d = 0.5, 0.1
    lens = math.pi * (4 * r + d) * (2 * r - d) ** 2 / 12
    ball = 4 / 3 * math.pi * r**3
    assert volume_iou(sphere(), sphere(d)) == pytest.approx(lens / (2 * ball - lens), abs=0.02)
    assert volume_iou(sphere(), sphere(2.0)) == 0.0
    # Between the surfaces the nearest distance is at most the shift, and on average
    # about half of it; each direction contributes one such mean.
    assert 0.5 * d < chamfer_distance(sphere(), sphere(d)) < 2 * d
