"""Automatic mask benchmark (issue 15): IoU against hand-checked masks on real photos,
time per 1 MP photo on one core, and what decimation and texturing add per request.

    python -m gen3d.benchmarks.automask [--compare] [--overlays]

Photos are scikit-image's bundled CC0 samples; the truth masks are in
`benchmarks/automask_truth/` (how each was drawn: its README). `--compare` also scores
the alternatives the method was chosen against (rectangle-initialised GrabCut and
scikit-image's random walker, both from the same priors). Writes
`benchmarks/results/automask.json` and, with `--overlays`, `benchmarks/plots/automask/`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from gen3d.benchmarks.environment import fingerprint
from gen3d.serve.backends.base import Sample
from gen3d.serve.backends.silhouette import SilhouetteBackend
from gen3d.serve.model import automask, finishing
from gen3d.serve.outputs.encoding import encode_asset

HERE = Path(__file__).resolve().parent
TRUTH = HERE / "automask_truth"
PHOTOS = ("coffee", "astronaut", "chelsea", "rocket", "coins")


def photo(name: str) -> np.ndarray:
    from skimage import data

    image = getattr(data, name)()
    return image if image.ndim == 3 else np.stack([image] * 3, axis=-1)


def truth(name: str) -> np.ndarray:
    path = (
        HERE.parent / "samples" / "coffee_mask.png" if name == "coffee" else TRUTH / f"{name}.png"
    )
    return np.asarray(Image.open(path).convert("L")) >= 128


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def grabcut_rect(rgb: np.ndarray, margin: float = 0.05) -> np.ndarray:
    """Alternative: GrabCut from a rectangle 5% inside the frame (OpenCV's usual start)."""
    import cv2

    height, width = rgb.shape[:2]
    scale = min(1.0, automask.WORK_SIDE / max(height, width))
    small = cv2.resize(rgb, (round(width * scale), round(height * scale)), cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    seeds = np.zeros((sh, sw), np.uint8)
    mx, my = round(margin * sw), round(margin * sh)
    cv2.setRNGSeed(0)
    cv2.grabCut(
        np.ascontiguousarray(small[:, :, ::-1]),
        seeds,
        (mx, my, sw - 2 * mx, sh - 2 * my),
        np.zeros((1, 65)),
        np.zeros((1, 65)),
        automask.GRABCUT_ITERATIONS,
        cv2.GC_INIT_WITH_RECT,
    )
    fg = ((seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)).astype(np.uint8)
    return cv2.resize(fg, (width, height), interpolation=cv2.INTER_LINEAR) > 0


def random_walker(rgb: np.ndarray) -> np.ndarray:
    """Alternative without OpenCV: scikit-image's random walker, border = background,
    centre core = object (the same priors as ours)."""
    from skimage import color, segmentation, transform

    height, width = rgb.shape[:2]
    scale = automask.WORK_SIDE / max(height, width)
    small = transform.resize(rgb, (round(height * scale), round(width * scale)))
    sh, sw = small.shape[:2]
    labels = np.zeros((sh, sw), int)
    labels[[0, -1], :] = labels[:, [0, -1]] = 1
    yy, xx = np.mgrid[0:sh, 0:sw]
    radius = ((xx - (sw - 1) / 2) / (sw / 2)) ** 2 + ((yy - (sh - 1) / 2) / (sh / 2)) ** 2
    labels[radius < automask.CENTRE_CORE**2] = 2
    out = segmentation.random_walker(color.rgb2lab(small), labels, beta=130, channel_axis=-1)
    return transform.resize(out == 2, (height, width), order=0) > 0


METHODS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "grabcut": automask.grabcut_mask,  # what the server runs
    "grabcut_rect": grabcut_rect,
    "random_walker": random_walker,
}


def timed(fn: Callable[[], Any], repeats: int) -> tuple[Any, float]:
    """The last result and the median seconds over `repeats` runs."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def overlay(image: np.ndarray, mask: np.ndarray, true: np.ndarray, path: Path) -> None:
    """Green: the automatic mask; red line: the truth's outline."""
    from scipy import ndimage

    out = image.astype(np.float32)
    out[mask] = 0.55 * out[mask] + 0.45 * np.array([0, 255, 0])
    rim = true ^ ndimage.binary_erosion(true, iterations=2)
    out[rim] = [255, 0, 0]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(out.astype(np.uint8)).save(path, quality=85)


def mask_quality(methods: list[str], repeats: int, overlays: Path | None) -> list[dict]:
    rows = []
    for name in PHOTOS:
        image, true = photo(name), truth(name)
        row: dict[str, Any] = {"photo": name, "size": [image.shape[1], image.shape[0]]}
        for method in methods:
            mask, seconds = timed(lambda m=method, i=image: METHODS[m](i), repeats)
            row[method] = {"iou": round(iou(mask, true), 3), "seconds": round(seconds, 3)}
            if overlays is not None and method == "grabcut":
                overlay(image, mask, true, overlays / f"{name}.jpg")
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def at_one_megapixel(name: str) -> np.ndarray:
    image = photo(name)
    scale = (1_000_000 / (image.shape[0] * image.shape[1])) ** 0.5
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return np.asarray(Image.fromarray(image).resize(size, Image.LANCZOS))


def one_megapixel(repeats: int) -> dict[str, Any]:
    """GrabCut's time on each photo scaled to 1 MP (its cost depends on the content)."""
    seconds = {}
    for name in PHOTOS:
        image = at_one_megapixel(name)
        _, seconds[name] = timed(lambda i=image: automask.grabcut_mask(i), repeats)
    return {
        "pixels": "each photo scaled to 1.0 MP",
        "grabcut_seconds": {k: round(v, 3) for k, v in seconds.items()},
        "grabcut_seconds_median": round(statistics.median(seconds.values()), 3),
        "grabcut_seconds_max": round(max(seconds.values()), 3),
    }


def finishing_costs(image: np.ndarray, mask: np.ndarray, repeats: int) -> list[dict]:
    """Per request at 1 MP (coffee with its truth mask): the silhouette mesh, then each
    option's added time and the GLB's size."""
    backend = SilhouetteBackend()
    cases: list[dict[str, Any]] = [
        {},
        {"target_faces": 10_000},
        {"target_faces": 2_000},
        {"texture": "image", "texture_size": 1024},
        {"texture": "image", "texture_size": 2048},
        {"texture": "image", "texture_size": 1024, "target_faces": 2_000},
    ]
    rows = []
    for options in cases:
        sample = Sample(image=image, mask=mask, options=options, mask_source="request")

        def run(s: Sample = sample) -> tuple[Any, bytes]:
            asset = finishing.finish(s, backend.predict([s])[0])
            return asset, encode_asset(asset, "glb")

        (asset, glb), seconds = timed(run, repeats)
        rows.append(
            {
                "options": options,
                "seconds": round(seconds, 3),
                "faces": len(asset.mesh.faces),
                "glb_bytes": len(glb),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["seconds"]
    for row in rows:
        row["added_seconds"] = round(row["seconds"] - base, 3)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", action="store_true", help="also score the alternatives")
    parser.add_argument("--overlays", action="store_true", help="write overlay pictures")
    parser.add_argument("--repeats", type=int, default=3, help="timing runs (median)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "automask.json")
    args = parser.parse_args(argv)
    import cv2

    cv2.setNumThreads(1)  # one core, as a serverless request gets
    methods = list(METHODS) if args.compare else ["grabcut"]
    overlays = HERE / "plots" / "automask" if args.overlays else None
    quality = mask_quality(methods, args.repeats, overlays)
    speed = one_megapixel(args.repeats)
    print(json.dumps(speed), flush=True)
    image = at_one_megapixel("coffee")
    true = Image.fromarray(truth("coffee")).resize(image.shape[1::-1], Image.NEAREST)
    costs = finishing_costs(image, np.asarray(true), args.repeats)
    document = {
        "what": "automatic mask IoU and time; decimation and texture costs (issue 15)",
        "command": "python -m gen3d.benchmarks.automask" + " --compare" * args.compare,
        "environment": fingerprint("cpu"),
        "mask_quality": quality,
        "mean_iou": {m: round(statistics.mean(r[m]["iou"] for r in quality), 3) for m in methods},
        "one_megapixel": speed,
        "finishing_at_1mp": costs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
