"""Sharpness: how much fine detail a generated face has, relative to its real target, inside the face.

    sharpness(fake, real, landmarks) = Var[ Laplacian(grey(fake)) ] / Var[ Laplacian(grey(real)) ]

both variances taken over the same pixels: the convex hull of the 68 target landmarks (the face
the generator was asked to draw: jaw, brows, eyes, nose, mouth), shrunk by one pixel so that the
hull's own outline does not count. grey = ITU-R BT.601 luma in [0, 1]; the Laplacian is
scipy.ndimage's 3x3 discrete one. 1.0 = as much high-frequency energy as the real target, below
1 = softer (a blurred or ghosted face), above 1 = more than the real face has (noise, checkerboard
artefacts): sharpness alone can be bought with noise, so the kit reports it beside FD-dlib, KID and
expression accuracy, which noise does not improve.

Why the variance of the Laplacian, and why a ratio. The Laplacian responds to the highest spatial
frequencies an image holds (edges of eyes, lips, teeth, hair strands), which is exactly what an
L1-trained generator averages away. Taken over the face hull only, the background (flat on the
synthetic default, cluttered on real photos) does not count. As a ratio to the real target of the
same pair, at the same size and in the same pixels, the measure does not depend on the image size
(64 px smoke, 128 px paper) or on how much detail a face has: both terms scale alike with
resolution, so 1.0 means "as sharp as real" at either size. A spectral ratio would do the same job
but needs a window and a band choice; the Laplacian has none.

A pair whose real target has no detail in the hull (variance below `FLAT`) cannot be scored: NaN,
counted by the registry as not scored.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.draw import polygon2mask
from skimage.morphology import convex_hull_image

from lmexpr_nb.metrics.psnr_ssim import to_uint8_hwc

FLAT = 1e-8                                    # Laplacian variance of a face with no detail at all
LUMA = np.array([0.299, 0.587, 0.114])


def hull_mask(landmarks, shape: tuple[int, int], shrink: int = 1) -> np.ndarray:
    """Boolean (H, W) mask: the convex hull of the points (x, y pixels), shrunk by `shrink` pixels
    (1 here: the hull's own outline does not count)."""
    pts = np.asarray(landmarks, dtype=np.float64)
    inside = polygon2mask(tuple(shape[:2]), pts[:, ::-1])     # (row, col) vertices; hull taken below
    if not inside.any():
        return inside
    hull = convex_hull_image(inside)
    return ndimage.binary_erosion(hull, iterations=shrink) if shrink else hull


def laplacian_variance(image, mask: np.ndarray) -> float:
    """Variance of the 3x3 Laplacian of an image's luma (0..1) over the mask's pixels."""
    grey = to_uint8_hwc(image).astype(np.float64) @ LUMA / 255.0
    return float(ndimage.laplace(grey)[mask].var())


def sharpness_ratio(fake, real, landmarks) -> float:
    """One pair's sharpness (module doc): NaN where the real target is flat or the hull is empty."""
    real = to_uint8_hwc(real)
    mask = hull_mask(landmarks, real.shape[:2])
    if mask.sum() < 9:
        return float("nan")
    denominator = laplacian_variance(real, mask)
    if denominator < FLAT:
        return float("nan")
    return laplacian_variance(fake, mask) / denominator


def sharpness_scores(*, fake=None, real=None, target_landmarks=None, **_) -> np.ndarray:
    """Per-image sharpness of generated faces against their real targets, inside the target's hull."""
    fakes, reals = to_uint8_hwc(fake), to_uint8_hwc(real)
    if fakes.ndim == 3:
        fakes, reals = fakes[None], reals[None]
    lms = np.asarray(target_landmarks, dtype=np.float64).reshape(len(fakes), -1, 2)
    if fakes.shape != reals.shape:
        raise ValueError(f"sharpness: generated {fakes.shape} and real {reals.shape} images differ in shape")
    return np.array([sharpness_ratio(f, r, lm) for f, r, lm in zip(fakes, reals, lms)])
