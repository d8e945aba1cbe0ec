"""Automatic object mask for a photo sent without one (issue 15).

Two sources, tried in this order:

- `onnx`: a learned segmenter shipped in the model artifact as `segmenter.onnx`, run with
  onnxruntime on the CPU when both are present. Contract: one float32 input
  (1, 3, H, W), RGB in [0, 1]; one output (1, 1, H, W) (or (1, H, W)) of foreground
  probabilities; fixed H, W are read from the graph, dynamic ones get SEGMENTER_SIDE.
- `grabcut`: OpenCV's GrabCut, which needs no weights. Seeded from priors that hold for
  object photos: the outermost pixel ring is background, an ellipse over the centre is
  probably object and its core surely is. Chosen by measurement against scikit-image's
  random walker and rectangle-initialised GrabCut (benchmarks/automask.py, the figures
  in benchmarks/results/automask.json).

A mask that covers almost nothing or almost everything is refused (422): it is what a
failed segmentation looks like, and inflating it would return a blob.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from types import ModuleType

import numpy as np

from gen3d.serve.errors import Unprocessable

log = logging.getLogger("gen3d.automask")

SEGMENTER_FILE = "segmenter.onnx"
SEGMENTER_SIDE = 320
WORK_SIDE = 320  # GrabCut runs on the photo scaled to this longer side (time ~ pixels)
GRABCUT_ITERATIONS = 5
CENTRE_PRIOR = 0.8  # ellipse radius (fraction of the half-extent): probably object
CENTRE_CORE = 0.1  # ... and surely object (0.1 over 0.2: coins 0.91 against 0.75 IoU)
MIN_COVERAGE = 0.005  # below: "almost nothing"
MAX_COVERAGE = 0.98  # above: "almost everything"
MIN_CONTRAST = 2.0  # grey levels (std. dev.): below, the photo is one flat colour


def check_coverage(mask: np.ndarray, source: str) -> None:
    """Refuse a mask that marks almost nothing or almost everything."""
    share = float(mask.mean()) if mask.size else 0.0
    if share < MIN_COVERAGE:
        raise Unprocessable(
            f"the {source} mask covers {share:.1%} of the photo (under {MIN_COVERAGE:.1%}): "
            "no object was found; send a mask, or a photo where the object stands out"
        )
    if share > MAX_COVERAGE:
        raise Unprocessable(
            f"the {source} mask covers {share:.1%} of the photo (over {MAX_COVERAGE:.0%}): "
            "the object could not be told from the background; send a mask"
        )


@functools.cache
def _opencv() -> ModuleType:
    import cv2

    # Request threads already run in parallel: OpenCV's own pool would oversubscribe.
    cv2.setNumThreads(1)
    return cv2


def grabcut_mask(rgb: np.ndarray) -> np.ndarray:
    """GrabCut from border/centre priors; bool (H, W) at the photo's size."""
    cv2 = _opencv()

    height, width = rgb.shape[:2]
    scale = min(1.0, WORK_SIDE / max(height, width))
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    yy, xx = np.mgrid[0:sh, 0:sw]
    radius = ((xx - (sw - 1) / 2) / (sw / 2)) ** 2 + ((yy - (sh - 1) / 2) / (sh / 2)) ** 2
    seeds = np.full((sh, sw), cv2.GC_PR_BGD, np.uint8)
    seeds[radius < CENTRE_PRIOR**2] = cv2.GC_PR_FGD
    seeds[radius < CENTRE_CORE**2] = cv2.GC_FGD
    seeds[[0, -1], :] = cv2.GC_BGD
    seeds[:, [0, -1]] = cv2.GC_BGD
    bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
    bgr = np.ascontiguousarray(small[:, :, ::-1])
    # GrabCut seeds its colour models with k-means from OpenCV's per-thread RNG: seed it,
    # so one photo always gets one mask.
    cv2.setRNGSeed(0)
    try:
        cv2.grabCut(bgr, seeds, None, bgd, fgd, GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        # A photo of one colour leaves GrabCut's colour models degenerate.
        return np.zeros((height, width), bool)
    fg = ((seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)).astype(np.uint8)
    return cv2.resize(fg, (width, height), interpolation=cv2.INTER_LINEAR) > 0


class OnnxSegmenter:
    """A learned foreground segmenter from the model artifact, run with onnxruntime."""

    def __init__(self, path: Path) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # request threads run in parallel
        self.session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or not outputs:
            raise ValueError(f"{path}: expected one (1, 3, H, W) input and an output")
        self.input_name = inputs[0].name
        _, _, h, w = inputs[0].shape
        self.side = (
            h if isinstance(h, int) else SEGMENTER_SIDE,
            w if isinstance(w, int) else SEGMENTER_SIDE,
        )

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        from PIL import Image

        height, width = rgb.shape[:2]
        resized = Image.fromarray(rgb).resize((self.side[1], self.side[0]), Image.BILINEAR)
        x = np.asarray(resized, np.float32).transpose(2, 0, 1)[None] / 255.0
        (prob, *_) = self.session.run(None, {self.input_name: x})
        prob = np.asarray(prob, np.float32).reshape(self.side)
        back = Image.fromarray(prob).resize((width, height), Image.BILINEAR)
        return np.asarray(back) > 0.5


class AutoMasker:
    """Makes the mask for a photo-only request: the artifact's segmenter, else GrabCut."""

    def __init__(self, segmenter: OnnxSegmenter | None = None) -> None:
        self.segmenter = segmenter

    @property
    def source(self) -> str:
        return "onnx" if self.segmenter is not None else "grabcut"

    @classmethod
    def from_model_dir(cls, model_dir: Path | None) -> AutoMasker:
        path = Path(model_dir) / SEGMENTER_FILE if model_dir else None
        if path is None or not path.is_file():
            return cls()
        try:
            segmenter = OnnxSegmenter(path)
        except ImportError:
            log.warning("%s is present but onnxruntime is not installed; using GrabCut", path)
            return cls()
        log.info("automatic masks from %s", path)
        return cls(segmenter)

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, str]:
        """(mask, source); 422 when the mask covers almost nothing or everything."""
        if float(rgb.reshape(-1, rgb.shape[-1]).std(axis=0).max()) < MIN_CONTRAST:
            raise Unprocessable(
                "the photo is one flat colour: there is no object to find; "
                "send a photo of the object, or a mask"
            )
        mask = self.segmenter(rgb) if self.segmenter is not None else grabcut_mask(rgb)
        check_coverage(mask, self.source)
        return mask, self.source
