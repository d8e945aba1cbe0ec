"""Time `gen3d invoke --preview`'s renderer: the sample's mesh and splats, a 49,280-face sphere.

Median of 5 renders after one warm-up (imports, fonts), wall and CPU seconds; CPU time is
what a shared machine's other work does not inflate. Usage: python tools/preview_timing.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from gen3d.client.preview import render_preview
from gen3d.serve.assets import encode_asset
from gen3d.serve.backends.base import Sample
from gen3d.serve.backends.silhouette import SilhouetteBackend

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def main() -> None:
    out = Path(tempfile.mkdtemp(prefix="gen3d-preview-"))
    photo = np.asarray(Image.open(SAMPLES / "coffee.png").convert("RGB"))
    mask = np.asarray(Image.open(SAMPLES / "coffee_mask.png").convert("L")) > 127
    for fmt in ("glb", "ply"):
        sample = Sample(image=photo, mask=mask, seed=0, format=fmt)
        (asset,) = SilhouetteBackend().predict([sample])
        (out / f"coffee.{fmt}").write_bytes(encode_asset(asset, fmt))
    sphere = trimesh.creation.uv_sphere(radius=0.5, count=[112, 112])
    sphere.visual.vertex_colors = np.tile([200, 120, 40, 255], (len(sphere.vertices), 1))
    (out / "sphere.glb").write_bytes(sphere.export(file_type="glb"))
    for name in ("coffee.glb", "coffee.ply", "sphere.glb"):
        source = out / name
        render_preview(source, out / "warm-up.png")
        wall, cpu = [], []
        for _ in range(5):
            started, cpu_started = time.perf_counter(), time.process_time()
            render_preview(source, out / f"{name}.png")
            wall.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
        loaded = trimesh.load(source, force="mesh" if source.suffix == ".glb" else None)
        size = (
            f"{len(loaded.faces)} faces"
            if source.suffix == ".glb"
            else f"{len(loaded.vertices)} points"
        )
        print(
            f"{name} ({size}): wall {statistics.median(wall):.3f} s, "
            f"CPU {statistics.median(cpu):.3f} s (medians of 5)"
        )
    print(f"pictures in {out}")


if __name__ == "__main__":
    main()
