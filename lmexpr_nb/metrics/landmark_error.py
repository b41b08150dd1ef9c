"""Landmark error of generated faces: does the output follow the target geometry?

dlib's 68 landmarks are re-detected on each generated image and compared with the target
landmarks the generator was given:

    NME_i = mean_k |p_ik - t_ik| / |t_i,36 - t_i,45|

(inter-ocular normalisation by the target's outer eye corners, points 36 and 45, 0-based).
Images where no face is found are never dropped silently: their error is NaN, they are
counted (`n_missing`), and the mean is over the others.

Detection uses the kit's preprocessing detector (landmarks/detect.py's LandmarkDetector: dlib's
HOG detector and 68-point predictor; `nme_detector` upsamples once on crops under 200 px); among
several faces, the one overlapping the target landmarks' box most. `LandmarkErrorResult.detector`
names the detector.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from lmexpr_nb.landmarks.detect import MIN_SCORE, LandmarkDetector
from lmexpr_nb.metrics.recognisers import _uint8_list

OUTER_EYE_CORNERS = (36, 45)


@dataclass
class LandmarkErrorResult:
    mean: float                 # mean NME over images where a face was found (NaN if none)
    errors: np.ndarray = field(repr=False)   # (N,) per-image NME, NaN where no face was found
    n: int = 0
    n_missing: int = 0
    detector: str = ""


def normalised_mean_error(pred, target) -> float:
    """Mean point-to-point distance over the 68 points / target inter-ocular distance."""
    p, t = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if p.shape != t.shape or p.shape[-1] != 2:
        raise ValueError(f"landmark shapes differ or are not (K, 2): {p.shape} vs {t.shape}")
    iod = np.linalg.norm(t[OUTER_EYE_CORNERS[0]] - t[OUTER_EYE_CORNERS[1]])
    if iod <= 0:
        raise ValueError("target inter-ocular distance is 0")
    return float(np.linalg.norm(p - t, axis=1).mean() / iod)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area > 0 else 0.0


def nme_detector(image_size: int | None = None):
    """The kit's LandmarkDetector (preprocessing's), upsampling once on images under 200 px:
    dlib's HOG window is 80 px and a face fills only ~2/3 of a crop, so at 64-128 px it would
    find no face at upsample 0."""
    # every candidate from MIN_SCORE, not only the most confident: landmark_error takes the one at the target
    det = LandmarkDetector(upsample=1 if image_size is not None and image_size < 200 else 0,
                           other_face_score=MIN_SCORE)
    det.name = f"lmexpr_nb.landmarks.detect.LandmarkDetector (dlib HOG, upsample {det.upsample}, 68-point predictor)"
    return det


def landmark_error(images, target_landmarks, detector=None) -> LandmarkErrorResult:
    """Re-detect landmarks on `images` (uint8 RGB or [-1,1] floats) and compare with targets."""
    ims = _uint8_list(images)
    tg = np.asarray(target_landmarks, np.float64)
    if tg.shape != (len(ims), 68, 2):
        raise ValueError(f"target landmarks must be ({len(ims)}, 68, 2), got {tg.shape}")
    det = detector if detector is not None else nme_detector(ims[0].shape[0] if ims else None)
    errs = np.full(len(ims), np.nan)
    for i, img in enumerate(ims):
        boxes = det.detect(img)
        if not boxes:
            continue
        t = tg[i]  # several faces: the one overlapping the target landmarks' box
        box = max(boxes, key=lambda b: _iou(b, (t[:, 0].min(), t[:, 1].min(), t[:, 0].max(), t[:, 1].max())))
        errs[i] = normalised_mean_error(np.asarray(det.shape(img, box), np.float64), tg[i])
    ok = np.isfinite(errs)
    mean = float(errs[ok].mean()) if ok.any() else math.nan
    return LandmarkErrorResult(mean, errs, len(ims), int((~ok).sum()),
                               getattr(det, "name", type(det).__name__))


def nme_scores(*, fake=None, target_landmarks=None, detector=None, **_) -> np.ndarray:
    """Per-image NME (NaN where no face was found): the metrics registry's "landmark_error"."""
    return landmark_error(fake, target_landmarks, detector).errors
